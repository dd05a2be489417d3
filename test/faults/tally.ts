import { timestampMs } from '@bufbuild/protobuf/wkt';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { MessageState, type GetMessageResponse } from '@relay/proto';
import { RELAY_ID_HEADER, sleep, stateName, type TestClient } from '@relay/testkit';
import type { Accepted } from './load.js';
import type { FaultRig } from './rig.js';

export interface FaultFigures {
  fault: string;
  accepted: number;
  /** Accepted messages the provider received at least once. */
  delivered: number;
  lost: number;
  /** Copies beyond the first, over all accepted messages. */
  duplicates: number;
  /** Accepted before the fault and recorded SENT only after it: the most that may be duplicated. */
  inFlight: number;
  /** Every message delivered more than once: id, copies and its history. */
  duplicated: string[];
  /** Duplicated messages that were not in flight at the fault (outside the documented window). */
  outsideWindow: string[];
  /** Messages that did not end SENT, with their state. */
  notSent: string[];
  /** Deliveries whose relay id is not the one SendMail answered (a second message for one idempotency key). */
  foreign: number;
}

/** Relay message ids of every delivery so far, by subject: SMTP servers and the Graph fake together. */
export function deliveriesBySubject(rig: FaultRig): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (subject: string | undefined, id: string | undefined) => {
    if (!subject) return;
    const list = out.get(subject) ?? [];
    list.push(id ?? '');
    out.set(subject, list);
  };
  for (const server of rig.smtpServers) {
    for (const m of server.messages) {
      const id = m.parsed.headers.get(RELAY_ID_HEADER);
      add(m.parsed.subject, typeof id === 'string' ? id : undefined);
    }
  }
  for (const m of rig.graph.sent) {
    add(m.message.subject, m.message.internetMessageHeaders?.find((h) => h.name.toLowerCase() === RELAY_ID_HEADER)?.value);
  }
  return out;
}

async function until(what: () => string, done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await sleep(100);
  }
}

/**
 * Waits until no durable consumer has anything pending or unacknowledged: from then on nothing
 * can be redelivered, so a late second send would already have happened.
 */
export async function waitForQuiet(natsUrl: string, timeoutMs: number): Promise<void> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    let busy: string[] = [];
    await until(
      () => `the consumers to settle (${busy.join(', ')})`,
      async () => {
        busy = [];
        for await (const s of jsm.streams.list()) {
          for await (const c of jsm.consumers.list(s.config.name)) {
            if (!c.config.durable_name) continue;
            if (c.num_pending > 0 || c.num_ack_pending > 0) busy.push(`${s.config.name}/${c.name}: ${c.num_pending} pending, ${c.num_ack_pending} unacked`);
          }
        }
        return busy.length === 0;
      },
      timeoutMs,
    );
  } finally {
    await nc.close();
  }
}

export interface Settled {
  /** Final statuses (SENT or FAILED) of the messages that reached one. */
  statuses: Map<string, GetMessageResponse>;
  /** What was still awaited when `timeoutMs` ran out; undefined when everything settled. */
  unsettled?: string;
}

/**
 * Waits until every accepted message reached the provider and ended SENT or FAILED and the
 * consumers are idle. A timeout is reported, not thrown, so that the figures still show.
 */
export async function settle(rig: FaultRig, accepted: Accepted[], timeoutMs: number): Promise<Settled> {
  const statuses = new Map<string, GetMessageResponse>();
  const end = Date.now() + timeoutMs;
  const left = () => Math.max(1, end - Date.now());
  const missing = () => accepted.filter((a) => !deliveriesBySubject(rig).has(a.subject));
  const finals = [MessageState.SENT, MessageState.FAILED];
  try {
    await until(
      () => `${missing().length} of ${accepted.length} messages at the provider`,
      () => missing().length === 0,
      left(),
    );
    await until(
      () => `${accepted.length - statuses.size} of ${accepted.length} messages to end SENT or FAILED`,
      async () => {
        for (const a of accepted) {
          if (statuses.has(a.messageId)) continue;
          const s = await getMessage(rig.client, a.messageId);
          if (s && finals.includes(s.state)) statuses.set(a.messageId, s);
        }
        return statuses.size === accepted.length;
      },
      left(),
    );
    await waitForQuiet(rig.nats.url, left());
    return { statuses };
  } catch (err) {
    for (const a of accepted) {
      if (statuses.has(a.messageId)) continue;
      const s = await getMessage(rig.client, a.messageId);
      if (s) statuses.set(a.messageId, s);
    }
    return { statuses, unsettled: (err as Error).message };
  }
}

async function getMessage(client: TestClient, id: string): Promise<GetMessageResponse | undefined> {
  try {
    return await client.getMessage(id, { deadlineMs: 5_000 });
  } catch {
    return undefined;
  }
}

/** The figures of one fault, from what the providers received and the statuses the relay reports. */
export function figures(fault: string, rig: FaultRig, accepted: Accepted[], statuses: Map<string, GetMessageResponse>, faultAt: number): FaultFigures {
  const deliveries = deliveriesBySubject(rig);
  let delivered = 0;
  let duplicates = 0;
  let foreign = 0;
  const outsideWindow: string[] = [];
  const duplicated: string[] = [];
  const notSent: string[] = [];
  let inFlight = 0;
  for (const a of accepted) {
    const copies = deliveries.get(a.subject) ?? [];
    const status = statuses.get(a.messageId);
    const firstSent = status?.history.find((h) => h.state === MessageState.SENT);
    const sentAt = firstSent?.at ? timestampMs(firstSent.at) : Infinity;
    const wasInFlight = a.acceptedAt < faultAt && sentAt > faultAt;
    if (wasInFlight) inFlight++;
    if (copies.length > 0) delivered++;
    if (copies.length > 1) {
      duplicates += copies.length - 1;
      duplicated.push(`${a.messageId} x${copies.length} (${history(status)})`);
      // Sent again after its sent-marker was stored: never in the documented window.
      if (!wasInFlight || sentAgainAfterSent(status)) outsideWindow.push(`${a.messageId} (${history(status)})`);
    }
    foreign += copies.filter((id) => id !== a.messageId).length;
    if (status?.state !== MessageState.SENT) notSent.push(`${a.messageId} ${status ? stateName(status.state) : 'unknown'} ${status?.lastError ?? ''}`);
  }
  return { fault, accepted: accepted.length, delivered, lost: accepted.length - delivered, duplicates, inFlight, duplicated, outsideWindow, notSent, foreign };
}

function sentAgainAfterSent(s: GetMessageResponse | undefined): boolean {
  const sent = s?.history.findIndex((h) => h.state === MessageState.SENT) ?? -1;
  return sent >= 0 && s!.history.slice(sent + 1).some((h) => h.state === MessageState.SENDING);
}

function history(s: GetMessageResponse | undefined): string {
  return s ? s.history.map((h) => `${stateName(h.state).replace('MESSAGE_STATE_', '')}#${h.attempt}`).join(' > ') : 'no status';
}

export function figuresTable(rows: FaultFigures[]): string {
  const head = ['fault', 'accepted', 'delivered', 'lost', 'duplicates', 'in flight', 'outside window'];
  const lines = rows.map((r) => [r.fault, r.accepted, r.delivered, r.lost, r.duplicates, r.inFlight, r.outsideWindow.length].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [fmt(head), `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...lines.map(fmt)].join('\n');
}
