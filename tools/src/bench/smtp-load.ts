import { connect, type Socket } from 'node:net';

export interface SmtpLoadOptions {
  port: number;
  host?: string;
  /** Messages offered per second, on a fixed schedule whatever the answers (open loop). */
  rate: number;
  seconds: number;
  /** Kept-open SMTP sessions the messages are spread over. */
  sessions: number;
  size: number;
  from: string;
  to: string;
}

export interface SmtpLoadResult {
  count: number;
  errors: number;
  achievedPerS: number;
  /** Time from the end of DATA (the final ".") to the server's reply. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** One SMTP session that reads replies in order (a reply ends at a line whose 4th character is a space). */
class Session {
  readonly #socket: Socket;
  #buffer = '';
  #waiting: Array<(reply: string) => void> = [];
  #lines: string[] = [];

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      for (let i = this.#buffer.indexOf('\r\n'); i >= 0; i = this.#buffer.indexOf('\r\n')) {
        const line = this.#buffer.slice(0, i);
        this.#buffer = this.#buffer.slice(i + 2);
        this.#lines.push(line);
        if (line[3] !== '-') {
          const reply = this.#lines.join('\n');
          this.#lines = [];
          this.#waiting.shift()?.(reply);
        }
      }
    });
  }

  static async open(host: string, port: number): Promise<Session> {
    const socket = connect({ host, port, noDelay: true });
    const s = new Session(socket);
    const greeting = s.reply();
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    await greeting;
    await s.command('EHLO bench.test');
    return s;
  }

  reply(): Promise<string> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  command(line: string): Promise<string> {
    const r = this.reply();
    this.#socket.write(`${line}\r\n`);
    return r;
  }

  /** MAIL, RCPT and DATA pipelined, then the message; resolves with the reply to its end and the time it took. */
  async send(from: string, to: string, message: string): Promise<{ reply: string; ms: number }> {
    const replies = [this.reply(), this.reply(), this.reply()];
    this.#socket.write(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`);
    const [mail, rcpt, data] = await Promise.all(replies);
    if (!data!.startsWith('354')) return { reply: `${data} (MAIL: ${mail}; RCPT: ${rcpt})`, ms: 0 };
    const end = this.reply();
    const t0 = performance.now();
    this.#socket.write(`${message}.\r\n`);
    const reply = await end;
    return { reply, ms: performance.now() - t0 };
  }

  close(): void {
    this.#socket.end('QUIT\r\n');
  }
}

/** A message of about `size` bytes: a few headers and lines of 76 characters. */
export function smtpMessage(from: string, to: string, size: number): string {
  const head = `From: <${from}>\r\nTo: <${to}>\r\nSubject: bench\r\n\r\n`;
  const line = `${'x'.repeat(76)}\r\n`;
  return head + line.repeat(Math.max(1, Math.ceil((size - head.length) / line.length)));
}

/** Offers `rate` messages a second for `seconds` over kept-open sessions and times each reply to DATA. */
export async function smtpOpenLoop(o: SmtpLoadOptions): Promise<SmtpLoadResult> {
  const host = o.host ?? '127.0.0.1';
  const sessions = await Promise.all(Array.from({ length: o.sessions }, () => Session.open(host, o.port)));
  const idle = [...sessions];
  const backlog: number[] = [];
  const total = Math.round(o.rate * o.seconds);
  const latencies: number[] = [];
  let errors = 0;
  let done = 0;
  const t0 = performance.now();
  let finished: () => void = () => {};
  const allDone = new Promise<void>((r) => (finished = r));
  const message = smtpMessage(o.from, o.to, o.size);

  const run = (s: Session) => {
    backlog.shift();
    void s.send(o.from, o.to, message).then(({ reply, ms }) => {
      if (reply.startsWith('250')) latencies.push(ms);
      else errors++;
      if (++done === total) finished();
      if (backlog.length > 0) run(s);
      else idle.push(s);
    });
  };
  let offered = 0;
  const tick = () => {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * o.rate) + 1);
    for (; offered < due; offered++) {
      backlog.push(offered);
      const s = idle.pop();
      if (s) run(s);
    }
    if (offered < total) setTimeout(tick, 1);
  };
  tick();
  await allDone;
  const seconds = (performance.now() - t0) / 1000;
  for (const s of sessions) s.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return { count: total, errors, achievedPerS: total / seconds, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: latencies.at(-1) ?? 0 };
}
