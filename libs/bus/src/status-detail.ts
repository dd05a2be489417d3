/**
 * Most bytes a status event's `detail` carries. Every event must fit in one broker message, or it
 * is never stored: a SENT event that cannot be stored would have its message sent again.
 */
export const MAX_STATUS_DETAIL_BYTES = 4_096;

/** Most bytes a status event's `remedy` carries (the known remedies are a few hundred). */
export const MAX_STATUS_REMEDY_BYTES = 1_024;

/** Addresses a detail names before it counts the rest. */
export const MAX_LISTED_ADDRESSES = 10;

/** `detail` cut to at most `maxBytes` of UTF-8 (on a character boundary), saying how much was left out. */
export function boundDetail(detail: string, maxBytes = MAX_STATUS_DETAIL_BYTES): string {
  // Three bytes per UTF-16 unit at most: short texts need no encoding to be known to fit.
  if (detail.length * 3 <= maxBytes) return detail;
  const bytes = Buffer.from(detail, 'utf8');
  if (bytes.length <= maxBytes) return detail;
  const note = ` … (${bytes.length} bytes in all, cut)`;
  let end = Math.max(0, maxBytes - Buffer.byteLength(note));
  // Back up to the start of a UTF-8 sequence so no character is split.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8') + note;
}

/** The first `max` items joined with ", ", then "and N more" for the rest. */
export function listSome(items: readonly string[], max = MAX_LISTED_ADDRESSES): string {
  if (items.length <= max) return items.join(', ');
  return `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}
