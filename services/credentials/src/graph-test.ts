import { create } from '@bufbuild/protobuf';
import type { SenderConfig } from '@relay/config';
import { describeGraphError, graphRemedyFor, parseGraphError, remedyFor } from '@relay/mail';
import { TestSenderResponseSchema, TestStepSchema, type TestSenderResponse, type TestStep } from '@relay/proto';
import { graphSenderTokenAuth, tokenRoles } from './graph-auth.js';
import { grantedGraphScopes, graphReadRefusal, needsGraphReadScope, tokenScopes } from './graph-read-scope.js';
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
 * permissions in it (permission), whether Exchange lets the app act on the mailbox (mailbox), with
 * Mail.ReadWrite a draft created and deleted (drafts, a warning at worst), and with `to` a real
 * sendMail (send), each with Graph's own answer; the first failure ends the test with a remedy.
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
  // A step's own remedy, when it knows better than the catalogue (set before the failing step).
  let own: string | undefined;
  const finish = () => {
    const ok = steps.every((s) => s.ok);
    // Token failures come from the identity platform (AADSTS codes); later ones are Graph's answers.
    const last = steps.at(-1);
    const text = last?.detail ?? '';
    // A later failure's remedy comes first; the read permission's only when nothing else failed.
    const failedLast = last && !last.ok;
    const remedy = ok ? '' : failedLast ? (own ?? (last.name === 'token' ? remedyFor(text) : graphRemedyFor(text)) ?? '') : (readRemedy ?? '');
    return create(TestSenderResponseSchema, { ok, steps, remedy });
  };

  // graph.flow: refresh_token: the mailbox's own token, whose delegated permissions are in `scp`.
  const delegated = graph.flow === 'refresh_token';
  const permission = delegated ? 'delegated permission' : 'application permission';
  let accessToken: string;
  // A token that cannot read the report folder: reported, and the sending steps still run.
  let readRemedy: string | undefined;
  try {
    const t = await tokens.get(id, graphSenderTokenAuth(sender, graph));
    accessToken = t.accessToken;
    const kind = delegated ? `delegated Graph token of ${graph.mailbox}` : 'app-only Graph token';
    step('token', true, `${kind} for tenant ${graph.tenantId} from ${graph.authorityUrl}, valid until ${new Date(t.expiresAt).toISOString()}`);
    if (needsGraphReadScope(sender)) {
      const granted = grantedGraphScopes(t);
      const refusal = graphReadRefusal(sender, granted);
      if (refusal) readRemedy = 'Press "Authenticate with MFA" and sign in as the mailbox again: the new sign-in grants Mail.ReadWrite.';
      step(
        'reports permission',
        !refusal,
        refusal ||
          (granted
            ? 'the token carries Mail.ReadWrite (for feedback.graph: delivery reports are read and moved)'
            : 'the identity platform did not list the permissions of the token; the report folder is read with it'),
      );
    }
  } catch (err) {
    step('token', false, (err as Error).message);
    return finish();
  }

  // The permissions, read from the token's `roles` (app-only) or `scp` (delegated) claim: our own
  // token, decoded without verifying, only to explain.
  const roles = delegated ? tokenScopes(accessToken) : tokenRoles(accessToken);
  if (roles === undefined) {
    step('permission', true, `the token is not a readable JWT, so its ${permission}s cannot be listed`);
  } else if (!roles.includes('Mail.Send')) {
    own = delegated ? undefined : permissionRemedy('Mail.Send', graph.clientId);
    step(
      'permission',
      false,
      `ErrorAccessDenied: the token carries no Mail.Send ${permission} (${delegated ? 'scp' : 'roles'}: ${roles.join(', ') || 'none'})`,
    );
    return finish();
  } else {
    const large = roles.includes('Mail.ReadWrite')
      ? 'Mail.ReadWrite present (attachments over 3 MB can be uploaded)'
      : delegated
        ? 'no Mail.ReadWrite: messages with attachments over 3 MB will fail (they are uploaded to a draft first)'
        : `warning: no Mail.ReadWrite, so messages with attachments over 3 MB will fail (they are uploaded to a draft first); to send them: ${permissionRemedy('Mail.ReadWrite', graph.clientId)}`;
    step('permission', true, `${permission}s: ${roles.join(', ')}; Mail.Send present; ${large}`);
  }

  const mailbox = await probeMailbox(graph, accessToken, opts.timeoutMs);
  if (!mailbox.ok) {
    if (/^ErrorAccessDenied: /.test(mailbox.detail) && !/AccessPolicy|RAOP|Access to OData is disabled/i.test(mailbox.detail)) {
      own = scopeRemedy(graph.mailbox, graph.clientId);
    }
    step('mailbox', false, mailbox.detail);
    return finish();
  }
  step('mailbox', true, mailbox.detail);
  if (roles?.includes('Mail.ReadWrite')) step('drafts', true, await probeDrafts(graph, accessToken, opts.timeoutMs));
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

type GraphSettings = NonNullable<SenderConfig['graph']>;

/**
 * Whether Exchange lets the app act on the mailbox with Mail.Send alone. No Graph read works with
 * Mail.Send only (mailbox settings need MailboxSettings.Read, folders Mail.ReadBasic, drafts
 * Mail.ReadWrite), so this asks sendMail for a message without recipients: Graph checks the app's
 * access to the mailbox (RBAC for Applications scopes, application access policies, a usable
 * Exchange Online mailbox) before the message, and refuses it then with 400 ErrorInvalidRecipients.
 * Nothing can be sent: the message has no recipient.
 */
async function probeMailbox(graph: GraphSettings, accessToken: string, timeoutMs = 30_000): Promise<{ ok: boolean; detail: string }> {
  const url = `${graph.graphUrl}/v1.0/users/${encodeURIComponent(graph.mailbox)}/sendMail`;
  const body = { message: { subject: 'Campus Relay permission check (no recipients: never sent)', toRecipients: [] }, saveToSentItems: false };
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    const error = res.ok ? undefined : parseGraphError(res.status, text, res.headers);
    if (res.ok || (res.status === 400 && error?.code === 'ErrorInvalidRecipients')) {
      return {
        ok: true,
        detail: `Exchange lets the app send as ${graph.mailbox}: a sendMail without recipients reached the mailbox and was refused only for lacking recipients (${res.status}${error ? ` ${error.code}` : ''}); nothing was sent`,
      };
    }
    return { ok: false, detail: describeGraphError(error!) };
  } catch (err) {
    return { ok: false, detail: `${url}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}` };
  }
}

/**
 * With Mail.ReadWrite: a draft created in the mailbox and deleted at once, the path of messages
 * with attachments over 3 MB (RBAC for Applications scopes Mail.ReadWrite apart from Mail.Send).
 * A refusal is a warning: messages without large attachments still go.
 */
async function probeDrafts(graph: GraphSettings, accessToken: string, timeoutMs = 30_000): Promise<string> {
  const base = `${graph.graphUrl}/v1.0/users/${encodeURIComponent(graph.mailbox)}/messages`;
  const call = async (url: string, method: string, body?: unknown) => {
    const res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${accessToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    return { res, text };
  };
  try {
    const created = await call(base, 'POST', { subject: 'Campus Relay permission check (deleted at once)' });
    if (!created.res.ok) {
      return `warning: Graph refused a draft in ${graph.mailbox}, so messages with attachments over 3 MB will fail: ${describeGraphError(parseGraphError(created.res.status, created.text, created.res.headers))}. ${scopeRemedy(graph.mailbox, graph.clientId, 'Application Mail.ReadWrite')}`;
    }
    const draftId = (JSON.parse(created.text) as { id?: string }).id ?? '';
    const deleted = await call(`${base}/${encodeURIComponent(draftId)}`, 'DELETE');
    const gone = deleted.res.ok ? 'and deleted' : `but not deleted (${deleted.res.status}; delete the draft "Campus Relay permission check" by hand)`;
    return `a draft was created in ${graph.mailbox} ${gone}: attachments over 3 MB can be uploaded`;
  } catch (err) {
    return `warning: the draft check did not finish: ${(err as Error).message}`;
  }
}

/** Where an admin grants an application permission of Microsoft Graph to the app. */
function permissionRemedy(permission: string, clientId: string): string {
  return `Microsoft Entra admin center → App registrations → the app (client id ${clientId}) → API permissions → Add a permission → Microsoft Graph → Application permissions → ${permission} → Add permissions, then "Grant admin consent"; the relay's next token carries it.`;
}

/** The app holds the permission, but Exchange keeps the mailbox out of the app's scope. */
function scopeRemedy(mailbox: string, clientId: string, role = 'Application Mail.Send'): string {
  return `The app holds the permission, but Exchange keeps ${mailbox} out of its reach. With RBAC for Applications, check Test-ServicePrincipalAuthorization -Identity ${clientId} -Resource ${mailbox} (InScope must be True for "${role}") and add the mailbox to the management scope of that role assignment (Get-ManagementRoleAssignment -RoleAssignee ${clientId}); with a legacy application access policy, Test-ApplicationAccessPolicy -Identity ${mailbox} -AppId ${clientId} must say Granted: add the mailbox to the policy's group. Changes can take an hour to apply.`;
}

function addressOf(from: string): string {
  return /<([^>]+)>\s*$/.exec(from)?.[1] ?? from.trim();
}
