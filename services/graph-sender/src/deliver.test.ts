import { createHash } from 'node:crypto';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { parseConfig, type SenderConfig } from '@relay/config';
import { isDeliveryError, type DeliveryError } from '@relay/core';
import { AttachmentSchema, EnvelopeSchema, type Envelope } from '@relay/proto';
import { startGraphFake, startIdentityFake, testCa, testRedisUrl, uniquePrefix, type GraphFake, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGraphDeliverer, type GraphDeliverer } from './deliver.js';
import { createGraphClient } from './graph-client.js';
import type { GraphTokens } from './graph-token.js';
import { createMailboxSlots } from './mailbox-slots.js';

const CLIENT = 'graph-app';
const SECRET = 'graph-secret';
const LIMITED = 'limited-app';
const MAILBOX = 'registrar@campus.example';

let idp: IdentityFake;
let graph: GraphFake;
let redis: Redis;
let deliverer: GraphDeliverer;
let senders: Map<string, SenderConfig>;
const prefix = uniquePrefix('graph-deliver');
const waits: number[] = [];
let tokenFetches = 0;

/** Tokens straight from the identity double, as the credentials service would fetch them. */
function tokensFrom(clientOf: (sender: string) => string): Pick<GraphTokens, 'get' | 'clear'> {
  const cache = new Map<string, string>();
  return {
    clear: () => cache.clear(),
    async get(sender, opts = {}) {
      if (!opts.rejected && cache.has(sender)) return cache.get(sender)!;
      tokenFetches++;
      const res = await fetch(`${idp.url}/tenant/oauth2/v2.0/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          client_id: clientOf(sender),
          client_secret: SECRET,
          scope: 'https://graph.microsoft.com/.default',
        }),
      });
      const token = ((await res.json()) as { access_token: string }).access_token;
      cache.set(sender, token);
      return token;
    },
  };
}

function graphSender(id: string, mailbox: string, extra = ''): SenderConfig {
  const text = `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - id: ${id}
    from: ${id === 'send-as' ? 'dean@campus.example' : mailbox}
    transport: graph
    graph: { tenant_id: tenant, client_id: ${CLIENT}, client_secret: ${SECRET}, mailbox: ${mailbox}, graph_url: "${graph.url}"${extra} }
`;
  return parseConfig(text, {}).senders[0]!;
}

let n = 0;
function envelope(sender: string, init: MessageInitShape<typeof EnvelopeSchema> = {}): Envelope {
  return create(EnvelopeSchema, { messageId: `m-${++n}`, sender, to: ['ada@students.campus.example'], subject: `s ${n}`, text: 'hello', attempt: 1, ...init });
}

function randomFile(name: string, bytes: number) {
  const content = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 4096) content[i] = (i * 7919) & 0xff;
  return create(AttachmentSchema, { filename: name, contentType: 'application/pdf', content });
}
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function failure(p: Promise<unknown>): Promise<DeliveryError> {
  try {
    await p;
  } catch (err) {
    if (isDeliveryError(err)) return err;
    throw err;
  }
  throw new Error('expected the delivery to fail');
}

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({
    clients: { [CLIENT]: SECRET, [LIMITED]: SECRET },
    appRoles: { [CLIENT]: ['Mail.Send', 'Mail.ReadWrite'], [LIMITED]: ['User.Read.All'] },
  });
  graph = await startGraphFake({
    identity: idp,
    mailboxes: {
      [MAILBOX]: { sendAs: [] },
      'office@campus.example': { sendAs: ['dean@campus.example'] },
      'policy@campus.example': { failure: 'ApplicationAccessPolicy' },
      'onprem@campus.example': { failure: 'MailboxNotEnabledForRESTAPI' },
      'small@campus.example': { failure: 'ErrorMessageSizeExceeded' },
    },
  });
  redis = new Redis(testRedisUrl());
  senders = new Map(
    [
      graphSender('registrar', MAILBOX, ', save_to_sent_items: false'),
      graphSender('send-as', MAILBOX),
      graphSender('policy', 'policy@campus.example'),
      graphSender('onprem', 'onprem@campus.example'),
      graphSender('small', 'small@campus.example'),
      graphSender('limited', MAILBOX),
    ].map((s) => [s.id, s]),
  );
  const client = createGraphClient({
    tokens: tokensFrom((sender) => (sender === 'limited' ? LIMITED : CLIENT)),
    slots: createMailboxSlots(redis, prefix, { pollMs: 5 }),
    sleep: async (ms) => {
      waits.push(ms);
    },
  });
  deliverer = createGraphDeliverer(() => senders, client);
});

afterAll(async () => {
  const keys = await redis?.keys(`${prefix}:*`);
  if (keys?.length) await redis.del(...keys);
  await redis?.quit();
  await Promise.all([graph?.close(), idp?.close()]);
});

beforeEach(() => {
  waits.length = 0;
});

describe('Graph delivery', () => {
  it('sends small mail with sendMail: JSON message, From kept, headers, Reply-To, saveToSentItems from the sender', async () => {
    const env = envelope('registrar', {
      cc: ['cc@campus.example'],
      bcc: ['bcc@campus.example'],
      headers: { 'X-Ticket': '7' },
      html: '<b>hi</b>',
      attachments: [randomFile('small.pdf', 100_000)],
    });
    const reply = await deliverer.deliver(env);
    const sent = graph.sent.at(-1)!;
    expect(reply).toBe(`202 Accepted by Microsoft Graph sendMail for ${MAILBOX} with 1 attachment(s) inline (request-id ${sent.requestId})`);
    expect(sent).toMatchObject({ via: 'sendMail', saveToSentItems: false, mailbox: MAILBOX });
    expect(sent.message.from).toEqual({ emailAddress: { address: MAILBOX } });
    expect(sent.message.body).toEqual({ contentType: 'HTML', content: '<b>hi</b>' });
    expect(sent.message.internetMessageHeaders).toContainEqual({ name: 'X-Relay-Message-Id', value: env.messageId });
    expect(sent.attachments).toMatchObject([{ name: 'small.pdf', size: 100_000, via: 'inline', sha256: sha(env.attachments[0]!.content) }]);
  });

  it('sends a 5 MB attachment by upload session in 320 KiB-multiple chunks, then the draft', async () => {
    const big = randomFile('transcript.pdf', 5 * 1024 * 1024);
    const env = envelope('registrar', { attachments: [big, randomFile('note.txt', 10)] });
    const reply = await deliverer.deliver(env);
    expect(reply).toMatch(/draft sent with 2 attachment\(s\), 1 by upload session \(request-id [0-9a-f-]{36}\)$/);
    const sent = graph.sent.at(-1)!;
    expect(sent.via).toBe('draft');
    const uploaded = sent.attachments.find((a) => a.name === 'transcript.pdf')!;
    expect(uploaded).toMatchObject({ via: 'upload-session', size: big.content.byteLength, sha256: sha(big.content) });
    expect(uploaded.chunks).toEqual([3_932_160, 5 * 1024 * 1024 - 3_932_160]);
    expect(sent.attachments.find((a) => a.name === 'note.txt')!.via).toBe('inline');
    // Upload URLs carry their own token: no bearer token went to them.
    expect(graph.requests.filter((r) => r.path.startsWith('/upload/')).every((r) => !r.authorized)).toBe(true);
    expect(graph.openDrafts()).toBe(0);
  });

  it('posts small attachments that do not fit the draft request one by one', async () => {
    // Base64 makes each 1.9 MB file 2.5 MB of JSON: one fits the draft's request, two would not.
    const files = [randomFile('a.pdf', 1_900_000), randomFile('b.pdf', 1_900_000), randomFile('c.pdf', 1_900_000)];
    const reply = await deliverer.deliver(envelope('registrar', { attachments: files }));
    expect(reply).toMatch(/draft sent with 3 attachment\(s\), 0 by upload session/);
    const sent = graph.sent.at(-1)!;
    expect(sent.attachments.map((a) => [a.name, a.via, a.sha256])).toEqual([
      ['a.pdf', 'inline', sha(files[0]!.content)],
      ['b.pdf', 'post', sha(files[1]!.content)],
      ['c.pdf', 'post', sha(files[2]!.content)],
    ]);
    // Every request stayed within Graph's 4 MB (the double answers 413 otherwise).
    expect(graph.requests.filter((r) => r.status === 413)).toEqual([]);
  });

  it('waits out 429 for as long as Retry-After says, then sends', async () => {
    graph.throttle(MAILBOX, { times: 2, retryAfterSeconds: 3 });
    await deliverer.deliver(envelope('registrar'));
    expect(waits).toEqual([3000, 3000]);
  });

  it('backs off with jitter when 503 comes without Retry-After', async () => {
    graph.throttle(MAILBOX, { times: 1, status: 503 });
    await deliverer.deliver(envelope('registrar'));
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThanOrEqual(500);
    expect(waits[0]).toBeLessThanOrEqual(1000);
  });

  it('hands a message that stays throttled back to the queue with the Retry-After delay', async () => {
    graph.throttle(MAILBOX, { times: 4, retryAfterSeconds: 5, status: 504 });
    const err = await failure(deliverer.deliver(envelope('registrar')));
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBe(5000);
    expect(err.message).toMatch(/^GatewayTimeout: .* \(HTTP 504, request-id [0-9a-f-]{36}\)$/);
  });

  it('replaces an expired token once on 401 and sends', async () => {
    await deliverer.deliver(envelope('registrar'));
    const before = tokenFetches;
    idp.revokeAccessTokens();
    await deliverer.deliver(envelope('registrar'));
    expect(tokenFetches - before).toBe(1);
    expect(graph.requests.filter((r) => r.status === 401)).toHaveLength(1);
  });

  it.each([
    ['send-as', 'ErrorSendAsDenied', 403, /"Send As"/],
    ['limited', 'ErrorAccessDenied', 403, /application\* permission Mail\.Send/],
    ['policy', 'ErrorAccessDenied', 403, /application access policy keeps this app away/],
    ['onprem', 'MailboxNotEnabledForRESTAPI', 404, /no Exchange Online mailbox/],
    ['small', 'ErrorMessageSizeExceeded', 413, /MaxSendSize/],
  ])('fails %s permanently with %s and a remedy', async (sender, code, status, remedy) => {
    const err = await failure(deliverer.deliver(envelope(sender)));
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(new RegExp(`^${code}: .* \\(HTTP ${status}, request-id [0-9a-f-]{36}\\)$`));
    expect(err.remedy).toMatch(remedy);
  });

  it('fails bad recipients permanently with ErrorInvalidRecipients', async () => {
    const err = await failure(deliverer.deliver(envelope('registrar', { to: ['not-an-address'] })));
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/^ErrorInvalidRecipients: /);
    expect(err.remedy).toMatch(/recipient address/);
  });

  it('deletes the draft when a large message fails at send', async () => {
    const err = await failure(deliverer.deliver(envelope('small', { attachments: [randomFile('big.bin', 4 * 1024 * 1024)] })));
    expect(err.message).toMatch(/^ErrorMessageSizeExceeded/);
    expect(graph.requests.at(-1)).toMatchObject({ method: 'DELETE', status: 204, mailbox: 'small@campus.example' });
    expect(graph.openDrafts()).toBe(0);
  });
});
