const CR = 13;
const LF = 10;
const DOT = 46;
const CR_ONLY = Buffer.from('\r');

/** Pieces shorter than this are joined with their neighbours rather than kept as slices of their own. */
const SMALL_PIECE = 4096;

/**
 * The message bytes of one transaction, up to `limit`; past it nothing more is kept, only counted.
 * Pieces are kept as the slices of the socket's buffers they arrived in (no copy), but runs of
 * small ones (dot-stuffed lines, tiny BDAT chunks or TLS records) are joined into one buffer of
 * at least 4 KiB, so that a message made of many tiny pieces costs its bytes and not an object
 * per piece.
 */
export class MessageSink {
  private readonly pieces: Buffer[] = [];
  private small: Buffer[] = [];
  private smallBytes = 0;
  size = 0;
  exceeded = false;

  constructor(readonly limit: number) {}

  /** The bytes kept, in order (empty once over the limit). */
  get chunks(): readonly Buffer[] {
    this.settle();
    return this.pieces;
  }

  /** True when `n` more bytes would take the message past the limit (BDAT checks before reading). */
  wouldExceed(n: number): boolean {
    return this.size + n > this.limit;
  }

  /** Counts `n` bytes that were dropped unread, and marks the message as over the limit. */
  overflow(n: number): void {
    this.size += n;
    this.drop();
  }

  readonly add = (chunk: Buffer): void => {
    this.size += chunk.length;
    if (this.exceeded) return;
    if (this.size > this.limit) {
      this.drop();
      return;
    }
    if (chunk.length >= SMALL_PIECE) {
      this.settle();
      this.pieces.push(chunk);
      return;
    }
    this.small.push(chunk);
    this.smallBytes += chunk.length;
    if (this.smallBytes >= SMALL_PIECE) this.settle();
  };

  /** Moves the small pieces waiting to the kept ones, joined into one. */
  private settle(): void {
    if (this.small.length === 0) return;
    this.pieces.push(this.small.length === 1 ? this.small[0]! : Buffer.concat(this.small, this.smallBytes));
    this.small = [];
    this.smallBytes = 0;
  }

  private drop(): void {
    this.exceeded = true;
    this.pieces.length = 0;
    this.small = [];
    this.smallBytes = 0;
  }
}

enum State {
  /** At the start of a line: a dot here is either stuffing or the end. */
  LineStart,
  /** Inside a line. */
  Mid,
  /** Inside a line, the last byte seen a CR. */
  MidCr,
  /** A dot at the start of a line, not passed on. */
  Dot,
  /** A dot and a CR at the start of a line; the CR not passed on yet. */
  DotCr,
}

/**
 * Reads the text of DATA (RFC 5321 4.5.2): removes the dot that stuffs a line starting with one
 * and finds the terminating CRLF.CRLF, across any chunk boundaries. The message keeps its last
 * CRLF; the terminator's ".CRLF" is not part of it. Whole runs between stuffed dots go out as
 * slices of the input, found with indexOf.
 */
export class DotDecoder {
  private state = State.LineStart;

  /** Passes the message bytes in `buf` to `emit`; returns the offset after the terminator, or -1. */
  push(buf: Buffer, emit: (chunk: Buffer) => void): number {
    const n = buf.length;
    let p = 0;
    let start = 0;
    while (p < n) {
      switch (this.state) {
        case State.Mid: {
          const i = buf.indexOf('\r\n', p, 'latin1');
          if (i === -1) {
            this.state = buf[n - 1] === CR ? State.MidCr : State.Mid;
            p = n;
          } else {
            p = i + 2;
            this.state = State.LineStart;
          }
          break;
        }
        case State.MidCr:
          if (buf[p] === LF) {
            p++;
            this.state = State.LineStart;
          } else {
            this.state = State.Mid;
          }
          break;
        case State.LineStart:
          if (buf[p] === DOT) {
            if (p > start) emit(buf.subarray(start, p));
            p++;
            start = p;
            this.state = State.Dot;
          } else {
            this.state = State.Mid;
          }
          break;
        case State.Dot:
          if (buf[p] === CR) {
            p++;
            this.state = State.DotCr;
          } else {
            this.state = State.Mid;
          }
          break;
        case State.DotCr:
          if (buf[p] === LF) {
            this.state = State.LineStart;
            return p + 1;
          }
          // ".\r" and not the end: the CR is message text. When it came in this buffer it is
          // in the run from `start`; when it ended the previous one, it was held back.
          if (p === 0) emit(CR_ONLY);
          this.state = State.Mid;
          break;
      }
    }
    // A CR that may be the terminator's stays out until the next byte tells.
    const end = this.state === State.DotCr ? n - 1 : n;
    if (end > start) emit(buf.subarray(start, end));
    return -1;
  }
}
