import type { ClientConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import type { CreateWebhookSecretRequest, SignWebhookRequest } from '@relay/proto';
import type { ClientRecord, LiveConfig } from '@relay/registry';
import type { CreatedWebhookSecret, WebhookSecrets } from './webhook-secrets.js';

/** The largest body signed: an event is a few KiB; this bounds what a caller makes us hash. */
export const MAX_WEBHOOK_PAYLOAD_BYTES = 256 * 1024;
/** How long a replaced secret signs too, unless the call says otherwise. */
export const DEFAULT_KEEP_PREVIOUS_SECONDS = 86_400;
export const MAX_KEEP_PREVIOUS_SECONDS = 30 * 86_400;
/** A signature is made for now: receivers refuse a timestamp five minutes off, so nothing older or newer is signed. */
const TIMESTAMP_TOLERANCE_S = 300;
const CLIENT_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_URL_LENGTH = 2_048;
const MAX_ID_LENGTH = 256;

export interface WebhookSigningDeps {
  secrets: WebhookSecrets;
  live: Pick<LiveConfig, 'current' | 'store'>;
  logger: { info(obj: object, msg: string): void };
  now?: () => number;
}

/** The internal calls CreateWebhookSecret and SignWebhook: checked input, then the sealed secrets. */
export function createWebhookSigning(deps: WebhookSigningDeps) {
  const now = deps.now ?? Date.now;

  function managedClient(name: string): ClientConfig {
    const client = deps.live.current().clients.find((c) => c.name === name);
    if (!client) throw new RelayError(ErrorCode.NotFound, `client "${name}" does not exist`);
    if (client.managedBy !== 'api') {
      throw new RelayError(ErrorCode.FailedPrecondition, `client "${name}" is defined in relay.yaml; its webhook secrets come from there (webhooks[].secret)`);
    }
    return client;
  }

  return {
    async create(req: CreateWebhookSecretRequest): Promise<CreatedWebhookSecret> {
      checkTarget(req.client, req.url);
      const keep = req.keepPreviousSeconds ?? DEFAULT_KEEP_PREVIOUS_SECONDS;
      if (keep > MAX_KEEP_PREVIOUS_SECONDS)
        throw new RelayError(ErrorCode.InvalidArgument, `keep_previous_seconds: at most ${MAX_KEEP_PREVIOUS_SECONDS} (30 days)`);
      if (deps.live.current().clients.some((c) => c.name === req.client && c.managedBy !== 'api')) managedClient(req.client);
      // The registry itself, not this service's copy: the webhook may have been added a moment ago.
      const e = await deps.live.store.clients.get(req.client);
      if (e?.operation !== 'PUT' || e.length === 0) throw new RelayError(ErrorCode.NotFound, `client "${req.client}" does not exist`);
      const rec = e.json<ClientRecord>();
      const hooks = webhookUrls(rec.spec);
      if (!hooks.includes(req.url)) {
        throw new RelayError(
          ErrorCode.NotFound,
          `client "${req.client}" has no webhook with url ${urlForLog(req.url)} (its webhooks: ${hooks.map(urlForLog).join(', ') || 'none'}); add it with PutClient first`,
        );
      }
      // A secret the registry no longer lists (its URL was removed, then added again) is not revived as the previous one.
      const listed = rec.webhook_secrets !== undefined && Object.hasOwn(rec.webhook_secrets, req.url);
      const made = await deps.secrets.create(req.client, req.url, listed ? keep * 1000 : 0, new Date(now()));
      // Never the secret: which webhook, and until when the old one signs.
      deps.logger.info({ client: req.client, url: urlForLog(req.url), previous_until: made.previousUntil?.toISOString() }, 'webhook secret made');
      return made;
    },

    async sign(req: SignWebhookRequest): Promise<string> {
      checkTarget(req.client, req.url);
      if (!req.id || req.id.length > MAX_ID_LENGTH) throw new RelayError(ErrorCode.InvalidArgument, `id: required, at most ${MAX_ID_LENGTH} characters`);
      if (req.payload.length > MAX_WEBHOOK_PAYLOAD_BYTES) {
        throw new RelayError(ErrorCode.InvalidArgument, `payload: ${req.payload.length} bytes, more than the ${MAX_WEBHOOK_PAYLOAD_BYTES} signed`);
      }
      const at = Number(req.timestamp);
      if (Math.abs(at - now() / 1000) > TIMESTAMP_TOLERANCE_S) {
        throw new RelayError(ErrorCode.InvalidArgument, `timestamp: more than ${TIMESTAMP_TOLERANCE_S} s from now; only deliveries made now are signed`);
      }
      const client = managedClient(req.client);
      if (!client.webhooks?.some((w) => w.url === req.url)) {
        throw new RelayError(ErrorCode.NotFound, `client "${req.client}" has no webhook with url ${urlForLog(req.url)}`);
      }
      const signature = await deps.secrets.sign(req.client, req.url, req.id, new Date(at * 1000), req.payload, new Date(now()));
      if (signature === undefined) {
        throw new RelayError(
          ErrorCode.FailedPrecondition,
          `webhook ${urlForLog(req.url)} of client "${req.client}" has no signing secret; run relay webhooks secret ${req.client} <url>`,
        );
      }
      return signature;
    },
  };
}

function checkTarget(client: string, url: string) {
  if (!CLIENT_NAME.test(client)) throw new RelayError(ErrorCode.InvalidArgument, 'client: must be 1-64 letters, digits, "-" or "_"');
  if (!url || url.length > MAX_URL_LENGTH) throw new RelayError(ErrorCode.InvalidArgument, `url: required, at most ${MAX_URL_LENGTH} characters`);
}

/** The URLs of a client's webhooks as its settings give them (trimmed, as the settings' check reads them). */
function webhookUrls(spec: Record<string, unknown>): string[] {
  const hooks = Array.isArray(spec.webhooks) ? (spec.webhooks as unknown[]) : [];
  return hooks.flatMap((w) => {
    const url = typeof w === 'object' && w !== null ? (w as { url?: unknown }).url : undefined;
    return typeof url === 'string' ? [url.trim()] : [];
  });
}

/** The URL without query or credentials: a token in a query string stays out of logs and answers. */
function urlForLog(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
