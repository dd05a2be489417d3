import { credentials, makeGenericClientConstructor, type Server, type ServiceDefinition } from '@grpc/grpc-js';
import { HealthImplementation, service as healthService, type ServingStatus } from 'grpc-health-check';

export type { ServingStatus };

export interface GrpcHealth {
  /** Brings the served status up to date now (a service awaits it before it starts listening). */
  refresh(): Promise<void>;
  /** Stops the readiness polling; everything is NOT_SERVING from then on. */
  close(): void;
}

/** How often the served status is brought up to date with the service's readiness. */
export const GRPC_HEALTH_POLL_MS = 1_000;

/**
 * The gRPC health checking protocol (`grpc.health.v1.Health`, Check and Watch) on `server`: the
 * overall status ("") and each of `services` are SERVING while `ready()` holds (connected to NATS,
 * Redis, ...) and NOT_SERVING otherwise.
 */
export function addGrpcHealth(server: Server, services: string[], ready: () => Promise<boolean> | boolean, pollMs = GRPC_HEALTH_POLL_MS): GrpcHealth {
  const names = ['', ...services];
  const health = new HealthImplementation(Object.fromEntries(names.map((n) => [n, 'NOT_SERVING' as ServingStatus])));
  health.addToServer(server);
  let current: ServingStatus | undefined;
  let closed = false;
  const update = async () => {
    const ok = await Promise.resolve(ready()).catch(() => false);
    const next: ServingStatus = ok ? 'SERVING' : 'NOT_SERVING';
    if (closed || next === current) return;
    current = next;
    for (const n of names) health.setStatus(n, next);
  };
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void update().finally(() => (running = false));
  }, pollMs);
  timer.unref();
  return {
    refresh: update,
    close() {
      closed = true;
      clearInterval(timer);
      for (const n of names) health.setStatus(n, 'NOT_SERVING');
    },
  };
}

/**
 * Asks a server's `grpc.health.v1.Health/Check` for `service` ("" = the server as a whole), as a
 * load balancer or `grpc_health_probe` would. Resolves with the status name, or rejects with the
 * call's error (UNAVAILABLE when nothing answers, NOT_FOUND for an unknown service).
 */
export function checkGrpcHealth(address: string, service = '', timeoutMs = 5_000): Promise<ServingStatus> {
  const client = new HealthClient(address, credentials.createInsecure());
  return new Promise<ServingStatus>((resolve, reject) => {
    const check = (client as unknown as Record<string, HealthCheck>).check!;
    check.call(client, { service }, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve((res?.status ?? 'UNKNOWN') as ServingStatus);
    });
  });
}

type HealthCheck = (req: { service: string }, opts: { deadline: Date }, cb: (err: Error | null, res?: { status?: string }) => void) => void;
const HealthClient = makeGenericClientConstructor(healthService as unknown as ServiceDefinition, 'Health');
