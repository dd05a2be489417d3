/** A problem the stack explains in its own words: printed without a stack trace, exit code 1. */
export class StackError extends Error {
  override name = 'StackError';
}

export function isStackError(err: unknown): err is StackError {
  return err instanceof StackError;
}
