import { MessageState } from '@relay/proto';
import {
  clientEntry,
  codeOf,
  FAST_DELIVERY,
  newClient,
  RpcError,
  type ServiceProcess,
  smtpSender,
  spawnService,
  type Stack,
  startSmtpServer,
  startStack,
  status,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let smtp: TestSmtpServer;
let stack: Stack;
let client: TestClient;
let scheduler: ServiceProcess | undefined;
const app = newClient('app', ['ok']);

beforeAll(async () => {
  smtp = await startSmtpServer({ security: 'starttls' });
  stack = await startStack({
    label: 'store-limits',
    config: {
      clients: [clientEntry(app)],
      senders: [smtpSender({ id: 'ok', server: smtp })],
      delivery: FAST_DELIVERY,
      limits: { store: { submitted: { max_messages: 3 } } },
    },
  });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  const mine = scheduler ? [{ name: 'scheduler', pid: scheduler.pid, status: await scheduler.stop('SIGTERM', 20_000), logs: scheduler.logs }] : [];
  const results = await stack?.stop();
  await smtp?.close();
  expect(uncleanExits([...mine, ...(results ?? [])])).toEqual([]);
});

describe('a full store', () => {
  it('answers SendMail RESOURCE_EXHAUSTED naming the limit, and still delivers the mail it stored', async () => {
    // Nothing takes new mail out of the submitted stream while the scheduler is down.
    expect((await stack.scheduler.stop('SIGTERM', 20_000)).code).toBe(0);
    const stored: string[] = [];
    for (let i = 0; i < 3; i++)
      stored.push((await client.sendMail({ sender: 'ok', to: [`full${i}@students.campus.example`], subject: `stored ${i}`, text: 'x' })).messageId);

    const refused = await codeOf(client.sendMail({ sender: 'ok', to: ['refused@students.campus.example'], subject: 'refused', text: 'x' }));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.details).toContain('limits.store.submitted (max_messages 3');

    scheduler = await spawnService('scheduler', { env: stack.env });
    for (const id of stored) {
      await waitForState(client, id, [MessageState.SENT]);
      await waitForMail(smtp, id);
    }
    expect(smtp.messages.some((m) => m.parsed.subject === 'refused')).toBe(false);

    // Delivered mail leaves the stream (the scheduler purges it), and the store takes mail again.
    const until = Date.now() + 15_000;
    for (;;) {
      try {
        await client.sendMail({ sender: 'ok', to: ['again@students.campus.example'], subject: 'again', text: 'x' });
        break;
      } catch (err) {
        if (!(err instanceof RpcError) || err.code !== status.RESOURCE_EXHAUSTED || Date.now() > until) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  });
});
