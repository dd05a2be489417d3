import { recordDeliveryReport, reportClaims, startReportReaders, stateByKey, type Bus } from '@relay/bus';
import type { SenderConfig } from '@relay/config';
import { MAX_NDR_BYTES, parseDeliveryReport } from '@relay/mail';
import { GRAPH_DEFAULTS, isGraphCallError, type GraphClient, type GraphTarget } from './graph-client.js';
import type { GraphTokens } from './graph-token.js';

export interface GraphReportSource {
  sender: string;
  mailbox: string;
  graphUrl: string;
  folder: string;
  processedFolder: string;
  maxConcurrent: number;
}

export interface GraphReadResult {
  read: number;
  recorded: number;
  moved: number;
  left: number;
  tooLarge: number;
}

export interface FeedbackLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

const SERVICE = 'relay-graph-sender';
/** Graph's answers that say the token may not read the mailbox (expired, revoked, or without the permission). */
const REFUSED = new Set([401, 403]);
const PAGE = 50;
/** Most messages one pass looks at; the rest wait for the next pass. */
const MAX_PER_PASS = 1_000;
/** Ids of messages left in the folder (not reports) that are not looked at again. */
const MAX_SEEN = 10_000;
/** PidTagMessageSize, which Graph gives as an extended property. */
const SIZE_PROPERTY = 'Integer 0x0E08';

interface ListedMessage {
  id: string;
  singleValueExtendedProperties?: Array<{ id: string; value: string }>;
}

/**
 * Reads a Graph sender's report folder once (Mail.ReadWrite on the mailbox): each delivery report
 * is recorded on the relay's message it is about and moved to the processed folder (made when
 * missing); nothing is deleted, other mail is left alone and remembered in `seen`. A message over
 * `maxBytes` (by its size property) is not downloaded.
 */
export async function readGraphReportsOnce(
  bus: Bus,
  client: GraphClient,
  source: GraphReportSource,
  seen: Set<string>,
  log: FeedbackLog,
  maxBytes = MAX_NDR_BYTES,
): Promise<GraphReadResult> {
  const result: GraphReadResult = { read: 0, recorded: 0, moved: 0, left: 0, tooLarge: 0 };
  const target: GraphTarget = { sender: source.sender, mailbox: source.mailbox, maxConcurrent: source.maxConcurrent };
  const base = `${source.graphUrl}/v1.0/users/${encodeURIComponent(source.mailbox)}`;
  const get = async <T>(url: string) => JSON.parse((await client.call(target, { method: 'GET', url, bearer: true })).text) as T;
  const post = async <T>(url: string, body: unknown) =>
    JSON.parse(
      (await client.call(target, { method: 'POST', url, bearer: true, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })).text,
    ) as T;

  const folderId = async (name: string, make: boolean): Promise<string> => {
    if (name.toLowerCase() === 'inbox') return 'inbox';
    const q = new URLSearchParams({ $filter: `displayName eq '${name.replaceAll("'", "''")}'` });
    const found = await get<{ value: Array<{ id: string }> }>(`${base}/mailFolders?${q}`);
    if (found.value[0]) return found.value[0].id;
    if (!make) throw new Error(`mailbox ${source.mailbox} has no folder "${name}" (feedback.folder)`);
    return (await post<{ id: string }>(`${base}/mailFolders`, { displayName: name })).id;
  };

  const from = await folderId(source.folder, false);
  const listed: ListedMessage[] = [];
  const first = new URLSearchParams({ $select: 'id', $top: String(PAGE), $expand: `singleValueExtendedProperties($filter=id eq '${SIZE_PROPERTY}')` });
  let next: string | undefined = `${base}/mailFolders/${encodeURIComponent(from)}/messages?${first}`;
  while (next && listed.length < MAX_PER_PASS) {
    const page: { value: ListedMessage[]; '@odata.nextLink'?: string } = await get(next);
    listed.push(...page.value.filter((m) => !seen.has(m.id)));
    next = page['@odata.nextLink'];
  }

  let processed: string | undefined;
  const leave = (id: string) => {
    seen.add(id);
    if (seen.size > MAX_SEEN) seen.delete(seen.values().next().value!);
  };
  for (const m of listed.slice(0, MAX_PER_PASS)) {
    result.read++;
    const size = Number(m.singleValueExtendedProperties?.find((p) => /^integer 0x0?e08$/i.test(p.id))?.value ?? 0);
    if (size > maxBytes) {
      result.tooLarge++;
      leave(m.id);
      log.warn({ sender: source.sender, id: m.id, size, max_bytes: maxBytes }, 'message too large to read as a delivery report; left in place');
      continue;
    }
    const mime = (await client.call(target, { method: 'GET', url: `${base}/messages/${encodeURIComponent(m.id)}/$value`, bearer: true })).text;
    const report = await parseDeliveryReport(Buffer.from(mime, 'utf8'), maxBytes).catch(() => undefined);
    if (!report) {
      result.left++;
      leave(m.id);
      continue;
    }
    const outcome = await recordDeliveryReport(bus, report, SERVICE);
    const known = outcome.recorded || (outcome.messageId !== undefined && outcome.reason !== 'no such message');
    if (!known) {
      result.left++;
      leave(m.id);
      log.info(
        { sender: source.sender, message_id: outcome.messageId, reason: outcome.recorded ? '' : outcome.reason },
        'delivery report about no message of this relay; left in place',
      );
      continue;
    }
    if (outcome.recorded) result.recorded++;
    processed ??= await folderId(source.processedFolder, true);
    await post(`${base}/messages/${encodeURIComponent(m.id)}/move`, { destinationId: processed });
    result.moved++;
    log.info({ sender: source.sender, message_id: outcome.messageId, recorded: outcome.recorded }, 'delivery report moved to the processed folder');
  }
  return result;
}

export interface GraphFeedbackReaders {
  stop(): Promise<void>;
}

/**
 * Reads the report folder of every Graph sender with `feedback.graph`, each on its own interval.
 * A pass that Graph refused (401, 403) or whose token lacks Mail.ReadWrite makes the next pass
 * ask for a new token: after the mailbox signs in again, that one can read.
 */
export function startGraphFeedbackReaders(
  bus: Bus,
  client: GraphClient,
  tokens: Pick<GraphTokens, 'readRefusal'>,
  senders: () => Iterable<SenderConfig>,
  log: FeedbackLog,
  checkEveryMs = 5_000,
): GraphFeedbackReaders {
  const seenOf = stateByKey(() => new Set<string>());
  // Senders whose last pass was refused: their next pass starts with a new token.
  const tokenRejected = new Set<string>();
  async function read(source: GraphReportSource, ids: Set<string>): Promise<GraphReadResult> {
    const refusal = await tokens.readRefusal(source.sender, { rejected: tokenRejected.has(source.sender) });
    if (refusal) {
      // Asked for anew next time: after a new sign-in the credentials service hands out a token that has it.
      tokenRejected.add(source.sender);
      throw new Error(refusal);
    }
    try {
      const result = await readGraphReportsOnce(bus, client, source, ids, log);
      tokenRejected.delete(source.sender);
      return result;
    } catch (err) {
      if (isGraphCallError(err) && REFUSED.has(err.answer.status)) tokenRejected.add(source.sender);
      throw err;
    }
  }
  return startReportReaders(
    senders,
    (s) => {
      const f = s.feedback;
      if (!f?.graph || !s.graph) return undefined;
      const key = `graph\0${s.id}\0${s.graph.mailbox}\0${f.folder}`;
      // Messages left in place are remembered by this replica only (the shared cursor stays small).
      const ids = seenOf(key);
      const source: GraphReportSource = {
        sender: s.id,
        mailbox: s.graph.mailbox,
        graphUrl: s.graph.graphUrl,
        folder: f.folder,
        processedFolder: f.processedFolder,
        maxConcurrent: s.rate?.maxConcurrent ?? GRAPH_DEFAULTS.maxConcurrentPerMailbox,
      };
      return { key, where: { mailbox: source.mailbox }, read: () => read(source, ids) };
    },
    log,
    // One replica reads a mailbox per interval.
    { claims: reportClaims(bus), checkEveryMs },
  );
}
