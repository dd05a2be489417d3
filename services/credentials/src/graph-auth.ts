import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { GraphConfig, SenderConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import { GetGraphTokenResponseSchema, type GetGraphTokenResponse } from '@relay/proto';
import { grantedGraphScopes, graphReadRefusal, needsGraphReadScope } from './graph-read-scope.js';
import type { OAuthTokens } from './oauth-tokens.js';
import { SCOPES, type TokenAuth } from './token-providers.js';

/** Graph hosts of Microsoft's clouds; each has its own `.default` resource. */
const CLOUD_GRAPH_HOSTS = new Set(['graph.microsoft.com', 'graph.microsoft.us', 'dod-graph.microsoft.us', 'microsoftgraph.chinacloudapi.cn']);

/**
 * The app-only scope for a sender's graph_url: `<cloud graph>/.default` for Microsoft's national
 * clouds (US Government, China), `https://graph.microsoft.com/.default` otherwise (the global
 * cloud, a proxy in front of it, or a test double).
 */
export function graphScopes(graphUrl: string): string[] {
  const url = new URL(graphUrl);
  return CLOUD_GRAPH_HOSTS.has(url.host) ? [`https://${url.host}/.default`] : [...SCOPES.graphAppOnly];
}

/** Graph's resource for a sender's graph_url: its cloud's Graph, else the global one. */
function graphResource(graphUrl: string): string {
  const url = new URL(graphUrl);
  return CLOUD_GRAPH_HOSTS.has(url.host) ? `https://${url.host}` : 'https://graph.microsoft.com';
}

/**
 * The delegated scopes of a Graph sender signed in by its mailbox (graph.flow: refresh_token):
 * Mail.Send on its cloud's Graph, Mail.ReadWrite too when it reads its delivery reports (`read`),
 * and offline_access for a refresh token.
 */
export function graphDelegatedScopes(graphUrl: string, read = false): string[] {
  const resource = graphResource(graphUrl);
  return [`${resource}/Mail.Send`, ...(read ? [`${resource}/Mail.ReadWrite`] : []), 'offline_access'];
}

/**
 * A Graph sender as the token machinery sees it: a Microsoft app with client credentials, or with
 * the mailbox's refresh token (delegated Mail.Send, from BeginConsent) for graph.flow: refresh_token;
 * `read` adds the delegated Mail.ReadWrite for feedback.graph (see graph-read-scope.ts).
 */
export function graphTokenAuth(graph: GraphConfig, opts: { read?: boolean } = {}): TokenAuth {
  const delegated = graph.flow === 'refresh_token';
  const read = delegated && opts.read === true;
  return {
    type: 'oauth2',
    provider: 'microsoft',
    flow: delegated ? 'refresh_token' : 'client_credentials',
    tenantId: graph.tenantId,
    clientId: graph.clientId,
    clientSecret: graph.clientSecret,
    clientCertificate: graph.clientCertificate,
    user: graph.mailbox,
    refreshToken: undefined,
    authorityUrl: graph.authorityUrl,
    tokenUrl: undefined,
    scopes: delegated ? graphDelegatedScopes(graph.graphUrl, read) : graphScopes(graph.graphUrl),
    ...(read ? { optionalScopes: [`${graphResource(graph.graphUrl)}/Mail.ReadWrite`] } : {}),
  };
}

/** How the token of a Graph sender is fetched: with Mail.ReadWrite where it reads its reports (feedback.graph). */
export function graphSenderTokenAuth(sender: SenderConfig, graph: GraphConfig): TokenAuth {
  return graphTokenAuth(graph, { read: needsGraphReadScope(sender) });
}

/** The access token a graph-sender presents to Graph for `id`; `tokenRejected` replaces a refused one. */
export async function graphTokenFor(
  sender: SenderConfig | undefined,
  id: string,
  tokens: OAuthTokens,
  opts: { tokenRejected?: boolean } = {},
): Promise<GetGraphTokenResponse> {
  if (!sender) throw new RelayError(ErrorCode.NotFound, `sender "${id}" is not configured`);
  if (!sender.graph) throw new RelayError(ErrorCode.FailedPrecondition, `sender "${id}" does not use Microsoft Graph (transport: ${sender.transport})`);
  const token = await tokens.get(id, graphSenderTokenAuth(sender, sender.graph), { rejected: opts.tokenRejected ?? false });
  return create(GetGraphTokenResponseSchema, {
    accessToken: token.accessToken,
    expiresAt: timestampFromDate(new Date(token.expiresAt)),
    readRefusal: graphReadRefusal(sender, grantedGraphScopes(token)),
  });
}

/**
 * The application permissions (`roles`) in an app-only access token, or undefined when the token
 * is not a readable JWT. Entra ID puts the granted Graph application permissions there.
 */
export function tokenRoles(accessToken: string): string[] | undefined {
  const parts = accessToken.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { roles?: unknown };
    return Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [];
  } catch {
    return undefined;
  }
}
