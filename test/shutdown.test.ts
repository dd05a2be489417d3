import { EXIT_FORCE_MS } from '@relay/core';
import {
  clientEntry,
  hasNatsServer,
  NATS_SERVER_BIN,
  newClient,
  type PrivateNats,
  smtpSender,
  type Stack,
  startPrivateNats,
  startSmtpServer,
  startStack,
  type TestSmtpServer,
} from '@relay/testkit';
import { afterAll, describe, expect, it } from 'vitest';

const GRACE_MS = 1_000;
/** Room for a loaded machine to start and end a process. */
const SLACK_MS = 6_000;

describe.skipIf(!hasNatsServer)(`SIGTERM with NATS gone and a delivery the provider never answers (needs ${NATS_SERVER_BIN})`, () => {
  let nats: PrivateNats | undefined;
  let smtp: TestSmtpServer | undefined;
  let stack: Stack | undefined;
  afterAll(async () => {
    await stack?.stop().catch(() => {});
    await smtp?.close();
    await nats?.close();
  });

  it('every service ends by itself within RELAY_SHUTDOWN_GRACE plus the force time', async () => {
    nats = await startPrivateNats();
    let answering: () => void = () => {};
    const dataSeen = new Promise<void>((r) => (answering = r));
    // Takes the message and never answers it: the delivery stays in flight.
    smtp = await startSmtpServer({ reply: (ctx) => (ctx.phase === 'data' ? (answering(), new Promise(() => {})) : undefined) });
    const app = newClient('app', ['s1']);
    stack = await startStack({
      label: 'shutdown',
      config: { clients: [clientEntry(app)], senders: [smtpSender({ id: 's1', server: smtp, security: 'none' })] },
      env: { NATS_URL: nats.url, RELAY_SHUTDOWN_GRACE: `${GRACE_MS}ms`, OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' },
    });
    await stack.client(app.apiKey).sendMail({ sender: 's1', to: ['a@b.example'], subject: 'never answered', text: 'x' });
    await dataSeen;
    await nats.kill();
    const t0 = Date.now();
    const services = [stack.ingest, stack.scheduler, stack.smtpSenders[0]!, stack.graphSender, stack.credentials];
    const ended = await Promise.all(services.map(async (p) => ({ name: p.name, status: await p.stop('SIGTERM', 60_000), ms: Date.now() - t0 })));
    for (const e of ended) {
      // Not killed by the harness after its 60 s, and in time.
      expect(e.status.signal, e.name).toBeNull();
      expect(e.ms, e.name).toBeLessThan(GRACE_MS + EXIT_FORCE_MS + SLACK_MS);
    }
  }, 120_000);
});
