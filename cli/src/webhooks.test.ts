import type { ListWebhookDeliveriesRequest } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { at, relay, relayCli, useFakeRelay } from './testing/fixture.js';

useFakeRelay();

const delivery = (attempt: number, statusCode: number, error = '') => ({
  at,
  eventId: 'evt_01a2_7',
  eventType: 'message.sent',
  messageId: '01a2-b3',
  attempt,
  statusCode,
  error,
  response: '',
  durationMs: 12,
});

describe('relay webhooks deliveries', () => {
  it("prints each endpoint's pending events and its last attempts", async () => {
    relay.on('listWebhookDeliveries', () => ({
      endpoints: [
        {
          url: 'https://sis.campus.example/hooks',
          events: ['sent', 'failed'],
          pending: 3n,
          deliveries: [delivery(2, 204), delivery(1, 0, 'ECONNREFUSED: connect ECONNREFUSED 10.0.0.9:443')],
        },
      ],
    }));
    const res = await relayCli(['webhooks', 'deliveries', 'student-system', '--limit', '5']);
    expect(res.code).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('https://sis.campus.example/hooks  events: sent,failed  pending: 3');
    expect(lines[1]).toMatch(/^TIME\s+EVENT\s+MESSAGE\s+ATTEMPT\s+STATUS\s+MS\s+ERROR$/);
    expect(lines[2]).toMatch(/^2030-01-02 03:04:05Z\s+message\.sent\s+01a2-b3\s+2\s+204\s+12\s+-$/);
    expect(lines[3]).toMatch(/\s1\s+-\s+12\s+ECONNREFUSED: connect ECONNREFUSED 10\.0\.0\.9:443$/);
    expect(relay.calls[0]).toMatchObject({ method: 'listWebhookDeliveries', request: { client: 'student-system', limit: 5 } });
  });

  it('says so for a client without webhooks, prints JSON with -o json, and checks --limit', async () => {
    relay.on('listWebhookDeliveries', (req: ListWebhookDeliveriesRequest) => ({
      endpoints: req.client === 'none' ? [] : [{ url: 'https://x.example/h', events: ['sent'] }],
    }));
    const none = await relayCli(['webhooks', 'deliveries', 'none']);
    expect(none).toMatchObject({ code: 0, stdout: '' });
    expect(none.stderr).toContain('client none has no webhooks');
    const json = await relayCli(['webhooks', 'deliveries', 'sis', '-o', 'json']);
    expect(JSON.parse(json.stdout)).toEqual({ endpoints: [{ url: 'https://x.example/h', events: ['sent'], pending: '0', deliveries: [], heldReason: '' }] });
    const bad = await relayCli(['webhooks', 'deliveries', 'sis', '--limit', '500']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--limit: a whole number from 1 to 64');
  });
});

describe('relay webhooks secret', () => {
  const secret = `whsec_${'A'.repeat(43)}=`;

  it('prints the new secret once on stdout, and says how long the previous one signs too', async () => {
    relay.on('createWebhookSecret', () => ({ secret, createdAt: at, previousUntil: at }));
    const res = await relayCli(['webhooks', 'secret', 'portal', 'https://portal.campus.example/hooks?x=1', '--keep-previous', '2h']);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(`${secret}\n`);
    expect(res.stderr).toContain('New signing secret for the webhook https://portal.campus.example/hooks?x=1 of client portal:');
    expect(res.stderr).toContain('it is not shown again');
    expect(res.stderr).toContain('previous secret too for 2h, until 2030-01-02 03:04:05Z');
    expect(relay.calls[0]).toMatchObject({
      method: 'createWebhookSecret',
      request: { client: 'portal', url: 'https://portal.campus.example/hooks?x=1', keepPreviousSeconds: 7200 },
    });
  });

  it('asks for a day of overlap by default, prints JSON with -o json, and checks --keep-previous', async () => {
    relay.on('createWebhookSecret', () => ({ secret, createdAt: at }));
    const json = await relayCli(['webhooks', 'secret', 'portal', 'https://p.example/h', '-o', 'json']);
    expect(JSON.parse(json.stdout)).toEqual({ secret, createdAt: '2030-01-02T03:04:05Z' });
    expect(relay.calls[0]).toMatchObject({ request: { keepPreviousSeconds: 86_400 } });
    const bad = await relayCli(['webhooks', 'secret', 'portal', 'https://p.example/h', '--keep-previous', '31d']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--keep-previous: at most 30d');
  });

  it('shows why an endpoint holds its events', async () => {
    relay.on('listWebhookDeliveries', () => ({
      endpoints: [
        {
          url: 'https://p.example/h',
          events: ['sent'],
          pending: 2n,
          heldReason: "no signing secret; run relay webhooks secret portal 'https://p.example/h' (CreateWebhookSecret)",
        },
      ],
    }));
    const res = await relayCli(['webhooks', 'deliveries', 'portal']);
    expect(res.stdout).toContain("  held: no signing secret; run relay webhooks secret portal 'https://p.example/h'");
  });
});
