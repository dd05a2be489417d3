/**
 * The log line of a refused internal call, readable on its own: which sender and why, e.g.
 * `credentials refused: sender "library": cannot reach the identity platform at ...`.
 */
export function refusalLine(refused: string, sender: string | undefined, err: unknown): string {
  const reason = err instanceof Error ? err.message : String(err);
  // Most reasons name the sender already: it is named once.
  if (!sender || reason.includes(`sender "${sender}"`)) return `${refused}: ${reason}`;
  return `${refused}: sender "${sender}": ${reason}`;
}
