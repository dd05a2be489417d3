import { connectBus, type Bus } from '@relay/bus';
import { dropBus, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSentCopyStream, recordSentCopy, SENT_COPY_HEADER } from './job.js';

const prefix = uniquePrefix('sent-copy-job');
let bus: Bus;

function recorder() {
  const lines: Array<{ level: string; msg: string }> = [];
  return {
    lines,
    warn: (_: object, msg: string) => lines.push({ level: 'warn', msg }),
    error: (_: object, msg: string) => lines.push({ level: 'error', msg }),
  };
}

beforeAll(async () => {
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'sent-copy-job-test' });
  await ensureSentCopyStream(bus);
});

afterAll(async () => {
  await bus?.close();
  await dropBus(prefix);
});

describe('recordSentCopy', () => {
  it('stores one job per message, carrying the bytes as sent', async () => {
    const raw = Buffer.from('Subject: x\r\nX-Relay-Message-ID: m-1\r\n\r\nbody\r\n');
    const log = recorder();
    await recordSentCopy(bus, { sender: 's', messageId: 'm-1', raw }, log);
    // Sent again in the window before the dispatch ack: the same job, stored once.
    await recordSentCopy(bus, { sender: 's', messageId: 'm-1', raw }, log);
    const info = await bus.jsm.streams.info(bus.names.sentCopyStream);
    expect(info.state.messages).toBe(1);
    const m = await bus.jsm.streams.getMessage(bus.names.sentCopyStream, { seq: info.state.first_seq });
    expect(Buffer.from(m!.data).equals(raw)).toBe(true);
    expect(m!.header.get(SENT_COPY_HEADER.messageId)).toBe('m-1');
    expect(m!.header.get(SENT_COPY_HEADER.sender)).toBe('s');
    expect(log.lines).toEqual([]);
  });

  it('never throws when the job cannot be stored: the mail is sent, the lost copy is logged', async () => {
    const closed = await connectBus({ servers: testNatsUrl(), prefix, name: 'sent-copy-job-closed' });
    await closed.close();
    const log = recorder();
    await expect(recordSentCopy(closed, { sender: 's', messageId: 'm-2', raw: Buffer.from('x') }, log)).resolves.toBeUndefined();
    expect(log.lines.at(-1)).toEqual({ level: 'error', msg: expect.stringContaining('no copy will be made') });
    expect(log.lines.filter((l) => l.level === 'warn').length).toBeGreaterThan(0);
  }, 20_000);
});
