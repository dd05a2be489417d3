import { SERVICE_NAMES, type ServiceName } from '@relay/core';
import {
  clientEntry,
  createTestClient,
  freePort,
  type GraphFake,
  masterKey,
  newClient,
  type PrivateNats,
  type PrivateRedis,
  type ServiceProcess,
  serviceTestEnv,
  sleep,
  smtpSender,
  type SmtpServerOptions,
  spawnService,
  startGraphFake,
  startIdentityFake,
  startPrivateNats,
  startPrivateRedis,
  startSmtpServer,
  testCa,
  type TestClient,
  type TestSmtpServer,
  uniquePrefix,
  writeConfig,
} from '@relay/testkit';

/** RELAY_ACK_WAIT of the rig: what a killed service held comes back after this long. */
export const ACK_WAIT_MS = 4_000;

const SMTP_AUTH = { user: 'relay@campus.example', password: 'faults-secret' };
const GRAPH_CLIENT_ID = 'faults-graph-app';
const GRAPH_SECRET = 'faults-graph-secret~value';
export const GRAPH_MAILBOX = 'registrar@campus.example';
/**
 * How long the providers take to answer a message: a sender has one in hand most of the time, so
 * that a kill can land between the provider's accept and the sent-marker.
 */
const PROVIDER_DELAY_MS = 300;

export interface FaultRig {
  nats: PrivateNats;
  redis: PrivateRedis;
  graph: GraphFake;
  /** Every SMTP server instance so far: the outage case replaces the server with a new one on the same port. */
  smtpServers: TestSmtpServer[];
  client: TestClient;
  /** Messages the providers are taking right now (received, not yet answered). */
  providerBusy(name: 'smtp-sender' | 'graph-sender'): number;
  /** The running process of each service. */
  service(name: ServiceName): ServiceProcess;
  /** SIGKILLs the service (kill -9). */
  kill(name: ServiceName): Promise<void>;
  /** Starts the service again with the same environment and ports; resolves once it is ready. */
  restart(name: ServiceName): Promise<void>;
  /** Closes the SMTP server: connections are refused until `smtpUp`. */
  smtpDown(): Promise<void>;
  smtpUp(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The five services as processes against a NATS, a Redis and an SMTP server of the rig's own (so
 * they can be taken down), with a Graph sender on the Graph and identity fakes. Ingest and
 * credentials keep fixed ports so that a restarted one is found where the old one was.
 */
export async function startFaultRig(): Promise<FaultRig> {
  const app = newClient('fault-app', ['mail', 'graph']);
  const [nats, redis, idp] = await Promise.all([
    startPrivateNats(),
    startPrivateRedis(),
    startIdentityFake({ clients: { [GRAPH_CLIENT_ID]: GRAPH_SECRET }, appRoles: { [GRAPH_CLIENT_ID]: ['Mail.Send'] } }),
  ]);
  const graph = await startGraphFake({ identity: idp, mailboxes: { [GRAPH_MAILBOX]: {} }, delayMs: PROVIDER_DELAY_MS });
  let smtpBusy = 0;
  const smtpOptions: SmtpServerOptions = {
    security: 'starttls',
    users: { [SMTP_AUTH.user]: SMTP_AUTH.password },
    async reply(ctx) {
      if (ctx.phase !== 'data') return undefined;
      smtpBusy++;
      await sleep(PROVIDER_DELAY_MS).finally(() => smtpBusy--);
      return undefined;
    },
  };
  const smtpServers = [await startSmtpServer(smtpOptions)];
  const smtpPort = smtpServers[0]!.port;
  const [grpcPort, credentialsPort] = await Promise.all([freePort(), freePort()]);

  const config = {
    clients: [clientEntry(app)],
    senders: [
      smtpSender({ id: 'mail', server: { port: smtpPort }, auth: SMTP_AUTH }),
      {
        id: 'graph',
        from: GRAPH_MAILBOX,
        transport: 'graph',
        graph: {
          tenant_id: 'tenant-faults',
          client_id: GRAPH_CLIENT_ID,
          client_secret: 'env:GRAPH_SECRET',
          mailbox: GRAPH_MAILBOX,
          authority_url: idp.url,
          graph_url: graph.url,
        },
      },
    ],
    delivery: { retry_initial: '200ms', retry_max: '1s', max_age: '24h' },
  };
  const env: Record<string, string> = {
    RELAY_CONFIG: writeConfig(config),
    NATS_URL: nats.url,
    REDIS_URL: redis.url,
    RELAY_BUS_PREFIX: uniquePrefix('faults'),
    RELAY_MASTER_KEY: masterKey(),
    RELAY_HOST: '127.0.0.1',
    RELAY_METRICS_PORT: '0',
    RELAY_SHUTDOWN_GRACE: '5s',
    RELAY_ACK_WAIT: `${ACK_WAIT_MS}ms`,
    RELAY_GRPC_PORT: String(grpcPort),
    RELAY_CREDENTIALS_PORT: String(credentialsPort),
    RELAY_CREDENTIALS_ADDR: `127.0.0.1:${credentialsPort}`,
    RELAY_HTTP_PORT: '0',
    NODE_EXTRA_CA_CERTS: testCa().caFile,
    GRAPH_SECRET,
    ...serviceTestEnv(),
  };
  const running = new Map<ServiceName, ServiceProcess>();
  // Generous: a restart competes for the CPU with the rest of the test suite.
  const start = async (name: ServiceName) => void running.set(name, await spawnService(name, { env, readyTimeoutMs: 60_000 }));

  let client: TestClient | undefined;
  const close = async () => {
    client?.close();
    await Promise.allSettled([...running.values()].map((p) => p.stop('SIGTERM', 15_000)));
    await Promise.allSettled([nats.close(), redis.close(), graph.close(), idp.close(), ...smtpServers.map((s) => s.close())]);
  };
  try {
    // Credentials first: it creates the streams the others use.
    await start('credentials');
    await Promise.all(SERVICE_NAMES.filter((n) => n !== 'credentials').map(start));
  } catch (err) {
    await close();
    throw err;
  }
  client = createTestClient(`127.0.0.1:${grpcPort}`, app.apiKey);

  return {
    nats,
    redis,
    graph,
    smtpServers,
    client,
    providerBusy: (name) => (name === 'smtp-sender' ? smtpBusy : graph.inFlight(GRAPH_MAILBOX)),
    service(name) {
      const p = running.get(name);
      if (!p) throw new Error(`${name} is not running`);
      return p;
    },
    async kill(name) {
      await running.get(name)?.kill();
      running.delete(name);
    },
    restart: start,
    smtpDown: () => smtpServers.at(-1)!.close(),
    async smtpUp() {
      smtpServers.push(await startSmtpServer({ ...smtpOptions, port: smtpPort }));
    },
    close,
  };
}
