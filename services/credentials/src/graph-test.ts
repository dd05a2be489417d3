import { create } from '@bufbuild/protobuf';
import type { SenderConfig } from '@relay/config';
import { describeGraphError, graphRemedyFor, parseGraphError, remedyFor } from '@relay/mail';
import { TestSenderResponseSchema, TestStepSchema, type TestSenderResponse, type TestStep } from '@relay/proto';
import { graphTokenAuth, tokenRoles } from './graph-auth.js';
import { tokenScopes } from './graph-delegated.js';
import type { OAuthTokens } from './oauth-tokens.js';

export interface GraphTestOptions {
  /** When set, a test message is sent to this address through sendMail. */
  to?: string;
  now?: () => Date;
  /** Time allowed for the test message's request. */
  timeoutMs?: number;
}

/**
 * The "Test" button for a `transport: graph` sender: an app-only token (token), the application
 * permissions in it (permission), and with `to` a real sendMail (send), each with Graph's own
 * answer; the first failure ends the test with a remedy.
 */
export async function testGraphSender(
  sender: SenderConfig & { graph: NonNullable<SenderConfig['graph']> },
  id: string,
  tokens: OAuthTokens,
  opts: GraphTestOptions = {},
): Promise<TestSenderResponse> {
  const graph = sender.graph;
  const steps: TestStep[] = [];
  const step = (name: string, ok: boolean, detail: string) => steps.push(create(TestStepSchema, { name, ok, detail }));
  const finish = () => {
    const ok = steps.every((s) => s.ok);
    // Token failures come from the identity platform (AADSTS codes); later ones are Graph's answers.
    const last = steps.at(-1);
    const text = last?.detail ?? '';
    const remedy = ok ? '' : ((last?.name === 'token' ? remedyFor(text) : graphRemedyFor(text)) ?? '');
    return create(TestSenderResponseSchema, { ok, steps, remedy });
  };

  // graph.flow: refresh_token: the mailbox's own token, whose delegated permissions are in `scp`.
  const delegated = graph.flow === 'refresh_token';
  const permission = delegated ? 'delegated permission' : 'application permission';
  let accessToken: string;
  try {
    const t = await tokens.get(id, graphTokenAuth(graph));
    accessToken = t.accessToken;
    const kind = delegated ? `delegated Graph token of ${graph.mailbox}` : 'app-only Graph token';
    step('token', true, `${kind} for tenant ${graph.tenantId} from ${graph.authorityUrl}, valid until ${new Date(t.expiresAt).toISOString()}`);
  } catch (err) {
    step('token', false, (err as Error).message);
    return finish();
  }

  // The mailbox itself (licence, application access policy, Send As) only shows when mail is sent.
  const untested = opts.to ? '' : `; ${graph.mailbox}, Send As and application access policies are checked only by a test message (give "to")`;
  const roles = delegated ? tokenScopes(accessToken) : tokenRoles(accessToken);
  if (roles === undefined) {
    step('permission', true, `the token is not a readable JWT, so its ${permission}s cannot be listed${untested}`);
  } else if (!roles.includes('Mail.Send')) {
    step(
      'permission',
      false,
      `ErrorAccessDenied: the token carries no Mail.Send ${permission} (${delegated ? 'scp' : 'roles'}: ${roles.join(', ') || 'none'})`,
    );
    return finish();
  } else {
    const large = roles.includes('Mail.ReadWrite')
      ? 'Mail.ReadWrite present (attachments over 3 MB can be uploaded)'
      : 'no Mail.ReadWrite: messages with attachments over 3 MB will fail (they are uploaded to a draft first)';
    step('permission', true, `${permission}s: ${roles.join(', ')}; Mail.Send present; ${large}${untested}`);
  }
  if (!opts.to) return finish();
  const now = (opts.now ?? (() => new Date()))();
  const body = {
    message: {
      subject: `Campus Relay test message from sender "${id}"`,
      body: {
        contentType: 'Text',
        content: `This message was sent by the "Test" button of Campus Relay for sender "${id}" at ${now.toISOString()}. No action is needed.`,
      },
      from: { emailAddress: { address: addressOf(sender.from) } },
      toRecipients: [{ emailAddress: { address: opts.to } }],
      internetMessageHeaders: [{ name: 'X-Relay-Test', value: id }],
    },
    saveToSentItems: graph.saveToSentItems,
  };
  const url = `${graph.graphUrl}/v1.0/users/${encodeURIComponent(graph.mailbox)}/sendMail`;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
    });
    const text = await res.text();
    if (res.status === 202 || res.ok) {
      const requestId = res.headers.get('request-id');
      step(
        'send',
        true,
        `${res.status} ${res.statusText || 'Accepted'}: sendMail as ${addressOf(sender.from)} from ${graph.mailbox}${requestId ? ` (request-id ${requestId})` : ''}`,
      );
    } else {
      step('send', false, describeGraphError(parseGraphError(res.status, text, res.headers)));
    }
  } catch (err) {
    step('send', false, `${url}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`);
  }
  return finish();
}

function addressOf(from: string): string {
  return /<([^>]+)>\s*$/.exec(from)?.[1] ?? from.trim();
}
