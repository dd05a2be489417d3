import { fromJson, toJson, type DescMessage, type DescMethod, type JsonValue, type Message } from '@bufbuild/protobuf';
import type { Metadata } from '@grpc/grpc-js';
import type { RelayConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import { AdminService, MailService } from '@relay/proto';
import { actingAs } from './actor.js';
import type { Session } from './session.js';

/** What a signed-in person may do: everything, their own senders only, or nothing. */
export type Role = { kind: 'admin' } | { kind: 'owner'; senders: string[] } | { kind: 'none' };

export function roleOf(person: Session, config: Pick<RelayConfig, 'console' | 'senders'>): Role {
  const email = person.email.toLowerCase();
  const c = config.console;
  // The demo's sign-in stands for an admin only while no real sign-in is configured.
  if (person.demo) return c ? { kind: 'none' } : { kind: 'admin' };
  if (c && (c.admins.includes(email) || person.groups.some((g) => c.adminGroups.includes(g)))) return { kind: 'admin' };
  const senders = config.senders.filter((s) => (s.owners ?? []).some((o) => o.toLowerCase() === email)).map((s) => s.id);
  return senders.length > 0 ? { kind: 'owner', senders } : { kind: 'none' };
}

/** An in-process AdminService (or MailService.GetMessage) handler: the very functions gRPC calls. */
export type Handler = (call: { metadata: Metadata; request: never }) => Promise<Message>;

/** The calls the console offers (WatchMessages, a stream, is not one: see queue-events.ts for the live Queues page). */
const METHODS = new Map<string, DescMethod>(
  [...AdminService.methods.filter((m) => m.methodKind === 'unary'), MailService.method.getMessage].map((m) => [m.name, m]),
);
/** What an owner may call; each is checked against their senders below. */
const OWNER_CALLS = new Set([
  'ListSenders',
  'GetSender',
  'PutSender',
  'SetSenderSecret',
  'TestSender',
  'BeginConsent',
  'GetQueueStats',
  'ListMessages',
  'RetryMessages',
  'CancelMessages',
  'GetMessage',
]);

export interface ConsoleApi {
  /** `name` is the method (e.g. ListSenders), `body` the request in protobuf's JSON form. */
  call(session: Session, role: Role, name: string, body: unknown): Promise<JsonValue>;
}

/**
 * The console's JSON API: AdminService's own handlers, called in process as the signed-in person
 * (no API key; the audit names them). Admins may call everything; owners only for their senders,
 * checked before the call and on what it answers.
 */
export function createConsoleApi(handlers: Record<string, Handler>): ConsoleApi {
  const invoke = async (method: DescMethod, metadata: Metadata, request: Message) => {
    const handler = handlers[method.localName];
    if (!handler) throw new RelayError(ErrorCode.NotFound, `${method.name} is not available`);
    return handler({ metadata, request: request as never });
  };
  return {
    async call(session, role, name, body) {
      const method = METHODS.get(name);
      if (!method) throw new RelayError(ErrorCode.NotFound, `no API call "${name}"`);
      if (role.kind === 'none') throw new RelayError(ErrorCode.PermissionDenied, `${session.email} has no role in the console`);
      if (role.kind === 'owner' && !OWNER_CALLS.has(name)) throw new RelayError(ErrorCode.PermissionDenied, `${name} is for admins only`);
      let request: Message;
      try {
        request = fromJson(method.input, (body ?? {}) as JsonValue);
      } catch (err) {
        throw new RelayError(ErrorCode.InvalidArgument, `request body: ${(err as Error).message}`, { cause: err });
      }
      // Owners act with an admin's reach, so everything they touch is checked to be theirs first.
      const metadata = actingAs({ email: session.email, admin: true });
      const res =
        role.kind === 'owner' ? await ownerCall(method, request, role.senders, (m, r) => invoke(m, metadata, r)) : await invoke(method, metadata, request);
      return toJson(method.output as DescMessage, res);
    },
  };
}

type Invoke = (method: DescMethod, request: Message) => Promise<Message>;

async function ownerCall(method: DescMethod, request: Message, senders: string[], invoke: Invoke): Promise<Message> {
  const mine = (id: string, field: string) => {
    if (!senders.includes(id)) {
      throw new RelayError(ErrorCode.PermissionDenied, `${field}: ${id ? `sender "${id}" is not one of yours` : 'required (one of your senders)'}`);
    }
  };
  const r = request as Message & Record<string, unknown>;
  switch (method.name) {
    case 'ListSenders': {
      const res = (await invoke(method, request)) as Message & { senders: Array<{ id: string }> };
      res.senders = res.senders.filter((s) => senders.includes(s.id));
      return res;
    }
    case 'GetQueueStats': {
      if (r.sender) mine(r.sender as string, 'sender');
      const res = (await invoke(method, request)) as Message & { senders: Array<{ sender: string }> };
      res.senders = res.senders.filter((s) => senders.includes(s.sender));
      return res;
    }
    case 'GetSender':
    case 'SetSenderSecret':
      mine(r.id as string, 'id');
      return invoke(method, request);
    case 'TestSender':
    case 'BeginConsent':
    case 'ListMessages':
      mine(r.sender as string, 'sender');
      return invoke(method, request);
    case 'PutSender': {
      const input = r.sender as { id: string; owners: string[]; spec?: Record<string, unknown> } | undefined;
      mine(input?.id ?? '', 'sender.id');
      // An owner changes how their sender sends, not who owns it.
      if (input?.owners.length || (input?.spec && 'owners' in input.spec)) {
        throw new RelayError(ErrorCode.PermissionDenied, 'sender.owners: only an admin changes who owns a sender');
      }
      return invoke(method, request);
    }
    case 'RetryMessages':
    case 'CancelMessages': {
      const ids = r.messageIds as string[];
      if (ids.length === 0) {
        mine(r.sender as string, 'sender');
        return invoke(method, request);
      }
      if (ids.length > 1_000) throw new RelayError(ErrorCode.InvalidArgument, 'message_ids: at most 1000 at once');
      const getMessage = MailService.method.getMessage;
      for (const id of ids) {
        const m = (await invoke(getMessage, fromJson(getMessage.input, { messageId: id }))) as Message & { sender: string };
        if (!senders.includes(m.sender)) throw new RelayError(ErrorCode.NotFound, `message_ids: no message ${id}`);
      }
      return invoke(method, request);
    }
    case 'GetMessage': {
      const res = (await invoke(method, request)) as Message & { sender: string };
      if (!senders.includes(res.sender)) throw new RelayError(ErrorCode.NotFound, `message_id: no message ${r.messageId as string}`);
      return res;
    }
    default:
      throw new RelayError(ErrorCode.PermissionDenied, `${method.name} is for admins only`);
  }
}
