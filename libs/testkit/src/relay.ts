import { readFileSync } from 'node:fs';
import { MessageState, type GetMessageResponse } from '@relay/proto';
import { randomApiKey } from './config.js';
import type { ReceivedMail, TestSmtpServer } from './smtp-server.js';
import { testCa } from './tls.js';
import type { TestClient } from './grpc-client.js';

/** The header the relay puts on every message it sends. */
export const RELAY_ID_HEADER = 'x-relay-message-id';

export const FAST_DELIVERY = { retry_initial: '200ms', retry_max: '1s', max_age: '24h' };

export function stateName(s: MessageState): string {
  return MessageState[s] ?? String(s);
}

/** The relay message id a received mail carries. */
export function relayIdOf(mail: ReceivedMail): string | undefined {
  const v = mail.parsed.headers.get(RELAY_ID_HEADER);
  return typeof v === 'string' ? v : undefined;
}

export function mailsWithId(server: TestSmtpServer, id: string): ReceivedMail[] {
  return server.messages.filter((m) => relayIdOf(m) === id);
}

async function poll<T>(what: () => string, check: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await sleep(everyMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves with the mail carrying relay id `id` once the server accepted it. */
export function waitForMail(server: TestSmtpServer, id: string, timeoutMs = 20_000): Promise<ReceivedMail> {
  return poll(
    () => `message ${id} at the SMTP server (${server.messages.length} received)`,
    () => mailsWithId(server, id)[0],
    timeoutMs,
  );
}

/** Polls GetMessage until the message is in one of `states`; fails early on an unexpected final state. */
export async function waitForState(client: TestClient, id: string, states: MessageState[], timeoutMs = 20_000): Promise<GetMessageResponse> {
  let last: GetMessageResponse | undefined;
  const finals = [MessageState.SENT, MessageState.FAILED];
  return poll(
    () => `message ${id} to be ${states.map(stateName).join('|')} (last: ${last ? `${stateName(last.state)} ${JSON.stringify(last.lastError)}` : 'none'})`,
    async () => {
      last = await client.getMessage(id);
      if (states.includes(last.state)) return last;
      if (finals.includes(last.state)) {
        throw new Error(`message ${id} ended ${stateName(last.state)} (${last.lastError}), expected ${states.map(stateName).join('|')}`);
      }
      return undefined;
    },
    timeoutMs,
    100,
  );
}

export function historyStates(res: GetMessageResponse): string[] {
  return res.history.map((h) => stateName(h.state).replace('MESSAGE_STATE_', ''));
}

export interface SmtpSenderOptions {
  id: string;
  server: { port: number };
  security?: 'tls' | 'starttls' | 'none';
  from?: string;
  replyTo?: string;
  auth?: { user: string; password: string };
  maxConnections?: number;
}

/** A sender entry for relay.yaml that reaches a test SMTP server and trusts the test CA. */
export function smtpSender(o: SmtpSenderOptions): Record<string, unknown> {
  const security = o.security ?? 'starttls';
  return {
    id: o.id,
    from: o.from ?? `${o.id}@campus.example`,
    ...(o.replyTo ? { reply_to: o.replyTo } : {}),
    transport: 'smtp',
    smtp: {
      host: '127.0.0.1',
      port: o.server.port,
      security,
      ...(security === 'none' ? {} : { servername: 'localhost', ca_file: testCa().caFile }),
      auth: o.auth ? { type: 'password', ...o.auth } : { type: 'none' },
      ...(o.maxConnections ? { pool: { max_connections: o.maxConnections } } : {}),
    },
  };
}

export interface TestClientConfig {
  name: string;
  apiKey: string;
  senders: string[];
  admin?: boolean;
}

/**
 * A sender's settings for PutSender (the operations API): without `id`, and with the test CA as
 * `ca_pem`, since the API takes no file paths.
 */
export function managedSpec(sender: Record<string, unknown>): Record<string, unknown> & { smtp: Record<string, unknown> } {
  const { id: _id, ...spec } = sender;
  const { ca_file: caFile, ...smtp } = spec.smtp as Record<string, unknown>;
  return { ...spec, smtp: { ...smtp, ...(caFile ? { ca_pem: readFileSync(String(caFile), 'utf8') } : {}) } };
}

export function clientEntry(c: TestClientConfig): Record<string, unknown> {
  return { name: c.name, api_key: c.apiKey, senders: c.senders, ...(c.admin ? { admin: true } : {}) };
}

export function newClient(name: string, senders: string[], admin = false): TestClientConfig {
  return { name, apiKey: randomApiKey(), senders, admin };
}
