import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { consumeLoop } from './consume-loop.js';

/** A stand-in for a consumer's message iterator that yields `seqs` and then ends (or throws). */
function fakeMessages(seqs: number[], end: 'end' | 'throw'): ConsumerMessages {
  let stopped = false;
  return {
    stop: () => void (stopped = true),
    async *[Symbol.asyncIterator]() {
      for (const seq of seqs) {
        if (stopped) return;
        yield { seq } as JsMsg;
      }
      if (end === 'throw') throw new Error('heartbeats missed');
    },
  } as unknown as ConsumerMessages;
}

describe('consumeLoop', () => {
  it('opens the consumer again when its iterator ends or fails, until stopped', async () => {
    const opened: number[] = [];
    const seen: number[] = [];
    const warnings: string[] = [];
    const batches: Array<[number[], 'end' | 'throw']> = [
      [[1, 2], 'throw'],
      [[3], 'end'],
      [[4], 'end'],
    ];
    let loop!: ReturnType<typeof consumeLoop>;
    loop = consumeLoop(
      async () => {
        opened.push(opened.length);
        const next = batches.shift() ?? [[], 'end'];
        return fakeMessages(...next);
      },
      async (m) => {
        seen.push(m.seq);
        if (m.seq === 4) loop.stop();
      },
      { warn: (_o, msg) => warnings.push(msg) },
    );
    await loop.done;
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(opened).toHaveLength(3);
    expect(warnings).toContain('consumer failed; opening it again');
  });
});
