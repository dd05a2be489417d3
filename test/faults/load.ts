import { sleep, type TestClient } from '@relay/testkit';

export interface Accepted {
  /** The subject, unique per message: how deliveries are matched to what was sent. */
  subject: string;
  messageId: string;
  /** When the SendMail call that was answered OK began: the message was stored after this. */
  acceptedAt: number;
}

export interface Load {
  /** Messages SendMail answered OK for, in the order of their answers. */
  accepted: Accepted[];
  /** Resolves once `n` messages more than when called have been accepted. */
  acceptedMore(n: number, timeoutMs?: number): Promise<void>;
  /** Stops submitting new messages and waits until every one begun was accepted. */
  stop(): Promise<Accepted[]>;
}

export interface LoadOptions {
  client: TestClient;
  /** Unique per load: goes into subjects and idempotency keys. */
  label: string;
  /** Senders to use in turn. */
  senders: string[];
  everyMs: number;
  /** How long one message may take to be accepted, retries included. */
  acceptWithinMs?: number;
}

const RETRY_EVERY_MS = 200;

/**
 * A steady stream of SendMail calls, one every `everyMs`. A call that fails is retried with the
 * same idempotency key, as a caller following the contract does (UNAVAILABLE: nothing stored,
 * safe to retry), so a message counts as accepted only once it was answered OK.
 */
export function startLoad(o: LoadOptions): Load {
  const accepted: Accepted[] = [];
  const pending = new Set<Promise<void>>();
  let stopped = false;
  let seq = 0;

  const submit = async (n: number) => {
    const subject = `${o.label} #${n}`;
    const req = {
      sender: o.senders[n % o.senders.length]!,
      to: [`student${n}@students.campus.example`],
      subject,
      text: `message ${n}`,
      idempotencyKey: `${o.label}-${n}`,
    };
    const until = Date.now() + (o.acceptWithinMs ?? 60_000);
    for (;;) {
      // The message may have been stored at any moment of the call that answered OK (and handed
      // on before the answer reached this process): that call's start is when it counts from.
      const callStarted = Date.now();
      try {
        const res = await o.client.sendMail(req, { deadlineMs: 5_000 });
        accepted.push({ subject, messageId: res.messageId, acceptedAt: callStarted });
        return;
      } catch (err) {
        if (Date.now() > until) throw new Error(`${subject} was not accepted within ${o.acceptWithinMs ?? 60_000} ms: ${(err as Error).message}`);
        await sleep(RETRY_EVERY_MS);
      }
    }
  };
  const failures: Error[] = [];
  const loop = (async () => {
    while (!stopped) {
      const p = submit(seq++).catch((err: Error) => void failures.push(err));
      pending.add(p);
      void p.finally(() => pending.delete(p));
      await sleep(o.everyMs);
    }
  })();

  return {
    accepted,
    async acceptedMore(n, timeoutMs = 60_000) {
      const target = accepted.length + n;
      const until = Date.now() + timeoutMs;
      while (accepted.length < target) {
        if (failures.length) throw failures[0]!;
        if (Date.now() > until) throw new Error(`${accepted.length} of ${target} messages accepted within ${timeoutMs} ms`);
        await sleep(50);
      }
    },
    async stop() {
      stopped = true;
      await loop;
      await Promise.all([...pending]);
      if (failures.length) throw failures[0]!;
      return accepted;
    },
  };
}
