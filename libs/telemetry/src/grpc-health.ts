import type { Server } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

export interface GrpcHealth {
  /** Stops the readiness polling. */
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
  void update();
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void update().finally(() => (running = false));
  }, pollMs);
  timer.unref();
  return {
    close() {
      closed = true;
      clearInterval(timer);
      for (const n of names) health.setStatus(n, 'NOT_SERVING');
    },
  };
}
