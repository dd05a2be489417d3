import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { type FakeRelay, runCli, startFakeRelay } from './fake-relay.js';

/** The fake relay of the test file that called useFakeRelay() (set once its beforeAll ran). */
export let relay: FakeRelay;
/** A temporary directory of that test file, removed after it. */
export let dir: string;

/** A fixed time for the canned answers. */
export const at = timestampFromDate(new Date('2030-01-02T03:04:05Z'));

/** Starts a fake relay for the calling test file (reset before each test) and a temporary directory. */
export function useFakeRelay(): void {
  beforeAll(async () => {
    relay = await startFakeRelay();
    dir = mkdtempSync(join(tmpdir(), 'relay-cli-'));
  });
  afterAll(async () => {
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => relay.reset());
}

/** The relay at the fake's address with an admin key from the environment, as most tests want it. */
export const relayCli = (args: string[], opts: { env?: Record<string, string>; stdin?: string } = {}) =>
  runCli(args, { ...opts, env: { RELAY_ADDRESS: relay.address, RELAY_API_KEY: 'admin-key', ...opts.env } });

/** A sender as GetSender/ListSenders answer it. */
export const sender = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  spec: { id, from: `${id}@campus.example`, transport: 'smtp', smtp: { host: 'smtp.office365.com', port: 587 } },
  managedBy: 'api',
  etag: `etag-${id}-1`,
  secrets: [{ field: 'smtp.auth.password', set: true, setAt: at }],
  updatedAt: at,
  ...extra,
});
