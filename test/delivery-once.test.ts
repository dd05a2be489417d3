import { connectBus, MAX_STATUS_DETAIL_BYTES, type Bus } from '@relay/bus';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { MessageState } from '@relay/proto';
import {
  clientEntry,
  consumerSettled,
  historyStates,
  mailsWithId,
  newClient,
  smtpSender,
  type Stack,
  startSmtpServer,
  startStack,
  type TestClient,
  testNatsUrl,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ACCEPTED = 'ada@students.campus.example';
const REFUSED = Array.from({ length: 30_000 }, (_, i) => `refused-recipient-${i}@bcc.students.campus.example`);

let smtp: TestSmtpServer;
let flaky: TestSmtpServer;
let stack: Stack;
let client: TestClient;
let bus: Bus;
const app = newClient('bulk-app', ['bulk', 'later']);
/** Shorter than the wait for send_at below. */
const MAX_AGE_MS = 3_000;

beforeAll(async () => {
  // Accepts one recipient and refuses every other, as a server does for unknown mailboxes.
  smtp = await startSmtpServer({ reply: (ctx) => (ctx.phase === 'rcpt' && ctx.rcpt !== ACCEPTED ? { code: 550, message: '5.1.1 User unknown' } : undefined) });
  // Refuses the first message it is offered for now, accepts from then on.
  flaky = await startSmtpServer({ reply: (ctx) => (ctx.phase === 'data' && ctx.attempt === 1 ? { code: 451, message: '4.3.0 Try again later' } : undefined) });
  stack = await startStack({
    label: 'delivery-once',
    config: {
      clients: [clientEntry(app)],
      senders: [
        // Raised past the default recipient cap so that one message can carry every refused recipient.
        { ...smtpSender({ id: 'bulk', server: smtp, security: 'none' }), rate: { max_recipients_per_message: REFUSED.length + 1 } },
        smtpSender({ id: 'later', server: flaky, security: 'none' }),
      ],
      delivery: { retry_initial: '200ms', retry_max: '1s', max_age: `${MAX_AGE_MS}ms` },
    },
  });
  client = stack.client(app.apiKey);
  bus = await connectBus({ servers: stack.env.NATS_URL ?? testNatsUrl(), prefix: stack.prefix, name: 'send-once-test' });
});

afterAll(async () => {
  await bus?.close();
  const results = await stack?.stop();
  await Promise.all([smtp?.close(), flaky?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

describe('a message accepted for one recipient and refused for 30,000', () => {
  it('is sent once and ends SENT, naming the first refused recipients and counting the rest', async () => {
    const res = await client.sendMail({ sender: 'bulk', to: [ACCEPTED], bcc: REFUSED, subject: 'one of many', text: 'x' });
    const status = await waitForState(client, res.messageId, [MessageState.SENT], 60_000);
    await waitForMail(smtp, res.messageId);
    // Acked: nothing left for the broker to hand out again.
    await consumerSettled(bus.jsm, bus.names.dispatchStream, bus.names.senderConsumer('smtp'), 10_000);
    expect(mailsWithId(smtp, res.messageId)).toHaveLength(1);
    expect(historyStates(status)).toEqual(['QUEUED', 'SENDING', 'SENT']);
    const sent = status.history.at(-1)!;
    expect(Buffer.byteLength(sent.detail)).toBeLessThanOrEqual(MAX_STATUS_DETAIL_BYTES);
    expect(sent.detail).toContain('30000 refused recipients: refused-recipient-0@bcc.students.campus.example');
    expect(sent.detail).toMatch(/and 29990 more$/);
  }, 120_000);
});

describe('delivery.max_age', () => {
  it('counts from the first attempt: mail whose send_at is further off than max_age is retried after a 4xx', async () => {
    const sendAt = new Date(Date.now() + MAX_AGE_MS + 2_000);
    const res = await client.sendMail({ sender: 'later', to: [ACCEPTED], subject: 'later', text: 'x', sendAt: timestampFromDate(sendAt) });
    const status = await waitForState(client, res.messageId, [MessageState.SENT], 30_000);
    expect(historyStates(status)).toEqual(['QUEUED', 'SENDING', 'RETRYING', 'SENDING', 'SENT']);
    expect(status.attempts).toBe(2);
    expect(mailsWithId(flaky, res.messageId)).toHaveLength(1);
  }, 60_000);
});
