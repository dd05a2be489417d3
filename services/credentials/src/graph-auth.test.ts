import { parseConfig } from '@relay/config';
import { describe, expect, it } from 'vitest';
import { graphScopes, graphTokenAuth, graphTokenFor, tokenRoles } from './graph-auth.js';
import type { OAuthTokens } from './oauth-tokens.js';

const jwt = (claims: object) => `${['{"alg":"none"}', JSON.stringify(claims)].map((p) => Buffer.from(p).toString('base64url')).join('.')}.sig`;

describe('graphScopes', () => {
  it.each([
    ['https://graph.microsoft.com', 'https://graph.microsoft.com/.default'],
    ['https://graph.microsoft.us', 'https://graph.microsoft.us/.default'],
    ['https://dod-graph.microsoft.us', 'https://dod-graph.microsoft.us/.default'],
    ['https://microsoftgraph.chinacloudapi.cn', 'https://microsoftgraph.chinacloudapi.cn/.default'],
    ['https://127.0.0.1:8443', 'https://graph.microsoft.com/.default'],
  ])('asks for the app-only scope of %s', (url, scope) => {
    expect(graphScopes(url)).toEqual([scope]);
  });
});

describe('tokenRoles', () => {
  it('reads the application permissions of a JWT and says when a token is opaque', () => {
    expect(tokenRoles(jwt({ roles: ['Mail.Send', 'Mail.ReadWrite'] }))).toEqual(['Mail.Send', 'Mail.ReadWrite']);
    expect(tokenRoles(jwt({ scp: 'Mail.Send' }))).toEqual([]);
    expect(tokenRoles('at-opaque')).toBeUndefined();
  });
});

describe('graphTokenFor', () => {
  const cfg = parseConfig(
    `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - { id: g, from: r@campus.example, transport: graph, graph: { tenant_id: t1, client_id: c1, client_secret: s1, mailbox: r@campus.example, authority_url: "https://login.microsoftonline.us", graph_url: "https://graph.microsoft.us" } }
  - { id: s, from: s@campus.example, transport: smtp, smtp: { host: h, port: 587, security: starttls } }
`,
    {},
  );
  const [graphSender, smtpSender] = cfg.senders;

  it('asks the token machinery for a client_credentials token of the sender app, for its cloud', async () => {
    const asked: unknown[] = [];
    const tokens: OAuthTokens = {
      get: async (sender, auth, opts) => {
        asked.push({ sender, auth, opts });
        return { accessToken: 'tok', expiresAt: 2_000_000_000_000, obtainedAt: 0 };
      },
    };
    const res = await graphTokenFor(graphSender, 'g', tokens, { tokenRejected: true });
    expect(res.accessToken).toBe('tok');
    expect(asked).toEqual([
      {
        sender: 'g',
        auth: expect.objectContaining({
          flow: 'client_credentials',
          provider: 'microsoft',
          tenantId: 't1',
          clientId: 'c1',
          authorityUrl: 'https://login.microsoftonline.us',
          scopes: ['https://graph.microsoft.us/.default'],
        }),
        opts: { rejected: true },
      },
    ]);
    expect(graphTokenAuth(graphSender!.graph!).clientSecret!.reveal()).toBe('s1');
  });

  it('refuses a sender that is not a graph sender, or none', async () => {
    const tokens: OAuthTokens = { get: () => Promise.reject(new Error('not called')) };
    await expect(graphTokenFor(smtpSender, 's', tokens)).rejects.toThrow(/does not use Microsoft Graph/);
    await expect(graphTokenFor(undefined, 'x', tokens)).rejects.toThrow(/not configured/);
  });
});
