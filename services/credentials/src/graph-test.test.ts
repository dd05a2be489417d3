import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { parseConfig, type SenderConfig } from '@relay/config';
import { startGraphFake, startIdentityFake, testCa, type GraphFake, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testGraphSender } from './graph-test.js';
import type { OAuthTokens } from './oauth-tokens.js';

const SECRET = 'graph-secret';
const FULL = 'full-app';
const SEND_ONLY = 'send-only-app';
const NO_SEND = 'no-send-app';
const SCOPED = 'scoped-app';
const DRAFTS_OUT = 'drafts-out-of-scope-app';
const MAILBOX = 'registrar@campus.example';

let idp: IdentityFake;
let graph: GraphFake;

/** Tokens straight from the identity double's token endpoint, as the credentials service fetches them. */
const tokens: OAuthTokens = {
  async get(_sender, auth) {
    const res = await fetch(`${auth.authorityUrl}/${auth.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: auth.clientId, client_secret: SECRET, scope: (auth.scopes ?? []).join(' ') }),
    });
    const t = (await res.json()) as { access_token: string; expires_in: number };
    return { accessToken: t.access_token, expiresAt: Date.now() + t.expires_in * 1000, obtainedAt: Date.now() };
  },
};

function graphSender(clientId: string, mailbox = MAILBOX): SenderConfig & { graph: NonNullable<SenderConfig['graph']> } {
  const text = `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - id: g
    from: ${mailbox}
    transport: graph
    graph: { tenant_id: tenant, client_id: ${clientId}, client_secret: ${SECRET}, mailbox: ${mailbox}, authority_url: "${idp.url}", graph_url: "${graph.url}" }
`;
  const s = parseConfig(text, {}).senders[0]!;
  return { ...s, graph: s.graph! };
}

const names = (r: Awaited<ReturnType<typeof testGraphSender>>) => r.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`);

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({
    clients: { [FULL]: SECRET, [SEND_ONLY]: SECRET, [NO_SEND]: SECRET, [SCOPED]: SECRET, [DRAFTS_OUT]: SECRET },
    appRoles: {
      [FULL]: ['Mail.Send', 'Mail.ReadWrite'],
      [SEND_ONLY]: ['Mail.Send'],
      [NO_SEND]: ['User.Read.All'],
      [SCOPED]: ['Mail.Send', 'Mail.ReadWrite'],
      [DRAFTS_OUT]: ['Mail.Send', 'Mail.ReadWrite'],
    },
  });
  graph = await startGraphFake({
    identity: idp,
    mailboxes: { [MAILBOX]: {}, 'it-ops@campus.example': {}, 'policy@campus.example': { failure: 'ApplicationAccessPolicy' } },
    // RBAC for Applications: the scoped app's roles reach it-ops only; the other app's Mail.Send
    // reaches the registrar, its Mail.ReadWrite only it-ops.
    appScopes: {
      [SCOPED]: { 'Mail.Send': ['it-ops@campus.example'], 'Mail.ReadWrite': ['it-ops@campus.example'] },
      [DRAFTS_OUT]: { 'Mail.Send': [MAILBOX], 'Mail.ReadWrite': ['it-ops@campus.example'] },
    },
  });
});

afterAll(async () => {
  await Promise.all([graph?.close(), idp?.close()]);
});

describe('testGraphSender', () => {
  it('with every permission granted: token, permission, mailbox and a draft created and deleted, without sending', async () => {
    const before = graph.sent.length;
    const r = await testGraphSender(graphSender(FULL), 'g', tokens);
    expect(names(r)).toEqual(['token:ok', 'permission:ok', 'mailbox:ok', 'drafts:ok']);
    expect(r.ok).toBe(true);
    expect(r.remedy).toBe('');
    expect(r.steps[1]!.detail).toBe(
      'application permissions: Mail.Send, Mail.ReadWrite; Mail.Send present; Mail.ReadWrite present (attachments over 3 MB can be uploaded)',
    );
    expect(r.steps[2]!.detail).toMatch(/^Exchange lets the app send as registrar@campus\.example: .*\(400 ErrorInvalidRecipients\); nothing was sent$/);
    expect(r.steps[3]!.detail).toBe('a draft was created in registrar@campus.example and deleted: attachments over 3 MB can be uploaded');
    expect(graph.sent.length).toBe(before);
    expect(graph.openDrafts()).toBe(0);
  });

  it('with "to", also sends the test message after the checks', async () => {
    const r = await testGraphSender(graphSender(FULL), 'g', tokens, { to: 'it-ops@campus.example' });
    expect(names(r)).toEqual(['token:ok', 'permission:ok', 'mailbox:ok', 'drafts:ok', 'send:ok']);
    expect(graph.sent.at(-1)!.message.toRecipients).toEqual([{ emailAddress: { address: 'it-ops@campus.example' } }]);
  });

  it('a token without Mail.Send fails at the permission step, with where to grant it', async () => {
    const requests = graph.requests.length;
    const r = await testGraphSender(graphSender(NO_SEND), 'g', tokens, { to: 'it-ops@campus.example' });
    expect(names(r)).toEqual(['token:ok', 'permission:failed']);
    expect(r.steps[1]!.detail).toBe('ErrorAccessDenied: the token carries no Mail.Send application permission (roles: User.Read.All)');
    expect(r.remedy).toBe(
      'Microsoft Entra admin center → App registrations → the app (client id no-send-app) → API permissions → Add a permission → Microsoft Graph → Application permissions → Mail.Send → Add permissions, then "Grant admin consent"; the relay\'s next token carries it.',
    );
    expect(graph.requests.length).toBe(requests);
  });

  it('Mail.Send without Mail.ReadWrite passes with a warning about large attachments, and skips the draft', async () => {
    const r = await testGraphSender(graphSender(SEND_ONLY), 'g', tokens);
    expect(names(r)).toEqual(['token:ok', 'permission:ok', 'mailbox:ok']);
    expect(r.ok).toBe(true);
    expect(r.steps[1]!.detail).toMatch(
      /^application permissions: Mail\.Send; Mail\.Send present; warning: no Mail\.ReadWrite, so messages with attachments over 3 MB will fail/,
    );
    expect(r.steps[1]!.detail).toMatch(/Microsoft Graph → Application permissions → Mail\.ReadWrite → Add permissions, then "Grant admin consent"/);
  });

  it("a mailbox outside the app's RBAC for Applications scope fails at the mailbox step, with how to scope it", async () => {
    const r = await testGraphSender(graphSender(SCOPED), 'g', tokens, { to: 'it-ops@campus.example' });
    expect(names(r)).toEqual(['token:ok', 'permission:ok', 'mailbox:failed']);
    expect(r.steps[2]!.detail).toMatch(/^ErrorAccessDenied: Access is denied\. Check credentials and try again\. \(HTTP 403, request-id [0-9a-f-]{36}\)$/);
    expect(r.remedy).toMatch(/^The app holds the permission, but Exchange keeps registrar@campus\.example out of its reach\./);
    expect(r.remedy).toMatch(/Test-ServicePrincipalAuthorization -Identity scoped-app -Resource registrar@campus\.example/);
    expect(r.remedy).toMatch(/Test-ApplicationAccessPolicy -Identity registrar@campus\.example -AppId scoped-app/);
    // The same app reaches the mailbox in its scope.
    expect(names(await testGraphSender(graphSender(SCOPED, 'it-ops@campus.example'), 'g', tokens))).toEqual([
      'token:ok',
      'permission:ok',
      'mailbox:ok',
      'drafts:ok',
    ]);
  });

  it('Mail.ReadWrite scoped away from the mailbox passes with a warning at the drafts step', async () => {
    const r = await testGraphSender(graphSender(DRAFTS_OUT), 'g', tokens);
    expect(names(r)).toEqual(['token:ok', 'permission:ok', 'mailbox:ok', 'drafts:ok']);
    expect(r.ok).toBe(true);
    expect(r.steps[3]!.detail).toMatch(
      /^warning: Graph refused a draft in registrar@campus\.example, so messages with attachments over 3 MB will fail: ErrorAccessDenied: .*InScope must be True for "Application Mail\.ReadWrite"/,
    );
    expect(graph.openDrafts()).toBe(0);
  });

  it('an application access policy that leaves the mailbox out fails at the mailbox step with its remedy', async () => {
    const r = await testGraphSender(graphSender(FULL, 'policy@campus.example'), 'g', tokens);
    expect(names(r)).toEqual(['token:ok', 'permission:ok', 'mailbox:failed']);
    expect(r.steps[2]!.detail).toMatch(/^ErrorAccessDenied: Access to OData is disabled: \[RAOP\]/);
    expect(r.remedy).toMatch(/application access policy keeps this app away/);
  });

  it('a mailbox that does not exist fails at the mailbox step', async () => {
    const r = await testGraphSender(graphSender(FULL, 'nobody@campus.example'), 'g', tokens);
    expect(names(r)).toEqual(['token:ok', 'permission:ok', 'mailbox:failed']);
    expect(r.steps[2]!.detail).toMatch(/^ErrorInvalidUser: /);
    expect(r.remedy).toMatch(/graph\.mailbox names no user in this tenant/);
  });
});
