import type { BatchObservableResult, Meter } from '@opentelemetry/api';
import type { MsgRequest, NextMsgRequest } from '@nats-io/jetstream';
import type { Bus } from '@relay/bus';
import type { Intake } from './intake.js';
import type { SenderLane } from './lane.js';
import type { RedisPacer } from './redis-pacer.js';

/** Prometheus text for each sender's pacing: backlog, waiting, next slot, recipients left today. */
export async function pacingMetrics(lanes: Iterable<SenderLane>, pacer: RedisPacer | undefined, intake?: Intake): Promise<string> {
  const rows: Record<string, string[]> = {
    relay_scheduler_intake_pending_messages: [],
    relay_scheduler_backlog_messages: [],
    relay_pacing_waiting_messages: [],
    relay_pacing_next_slot_seconds: [],
    relay_pacing_daily_recipients_remaining: [],
    relay_pacing_granted_total: [],
  };
  const pending = await intake?.pending().catch(() => undefined);
  if (pending !== undefined) rows.relay_scheduler_intake_pending_messages!.push(`relay_scheduler_intake_pending_messages ${pending}`);
  const now = Date.now();
  for (const lane of lanes) {
    const s = lane.sender;
    const label = `{sender="${s.id}"}`;
    const backlog = await lane.backlog().catch(() => undefined);
    if (backlog !== undefined) rows.relay_scheduler_backlog_messages!.push(`relay_scheduler_backlog_messages${label} ${backlog}`);
    if (!pacer) continue;
    const st = pacer.state(s.id);
    rows.relay_pacing_waiting_messages!.push(`relay_pacing_waiting_messages${label} ${st.waiting}`);
    rows.relay_pacing_granted_total!.push(`relay_pacing_granted_total${label} ${st.granted}`);
    rows.relay_pacing_next_slot_seconds!.push(
      `relay_pacing_next_slot_seconds${label} ${st.nextSlotAt ? Math.max(0, (st.nextSlotAt - now) / 1000).toFixed(3) : 0}`,
    );
    if (s.rate?.dailyRecipients) {
      const used = await pacer.recipientsToday(s.pacingKey);
      if (used !== undefined)
        rows.relay_pacing_daily_recipients_remaining!.push(`relay_pacing_daily_recipients_remaining${label} ${Math.max(0, s.rate.dailyRecipients - used)}`);
    }
  }
  const help: Record<string, string> = {
    relay_scheduler_intake_pending_messages: 'gauge New mail of all senders not yet looked at by the scheduler',
    relay_scheduler_backlog_messages: 'gauge Messages of a sender held by the scheduler (for its pace, send_at or retry time; stream and in hand)',
    relay_pacing_waiting_messages: 'gauge Messages this replica holds waiting for a pacing slot',
    relay_pacing_next_slot_seconds: "gauge Seconds until the sender's next slot opens (0 when not waiting)",
    relay_pacing_daily_recipients_remaining: 'gauge Recipients the sender may still reach in the rolling day',
    relay_pacing_granted_total: "counter Messages released by this replica's pacer",
  };
  return `${Object.entries(rows)
    .map(([name, lines]) => {
      const [type, ...text] = help[name]!.split(' ');
      return [`# HELP ${name} ${text.join(' ')}`, `# TYPE ${name} ${type}`, ...lines].join('\n');
    })
    .join('\n')}\n`;
}

export interface QueueGaugeSource {
  bus: Bus;
  lanes: () => Iterable<SenderLane>;
}

/**
 * OpenTelemetry gauges of each sender's queue, read from JetStream when metrics are collected (a
 * scrape of /metrics, an OTLP export): `relay_queue_depth_messages{sender,stage}` (stage
 * `submitted`: held by the scheduler for its pace, send_at or retry time; `dispatch`: handed on, not yet
 * taken by a sender service) and `relay_queue_oldest_age_seconds{sender}`, the age of the oldest
 * message still in either. Every replica reports the same, global, values. Returns the unregister.
 */
export function registerQueueGauges(meter: Meter, src: QueueGaugeSource): () => void {
  const depth = meter.createObservableGauge('relay_queue_depth_messages', {
    description: 'Messages of a sender waiting in JetStream, by stage (submitted, dispatch)',
  });
  const age = meter.createObservableGauge('relay_queue_oldest_age_seconds', {
    description: 'Age of the oldest message of a sender still waiting in JetStream',
    unit: 's',
  });
  const { bus } = src;
  // STREAM.MSG.GET takes next_by_subj (the first message of a subject from a sequence on) since
  // NATS 2.9; nats.js types it for direct gets only, and these work queues have no direct get.
  const first = (subject: string) => ({ seq: 1, next_by_subj: subject }) as NextMsgRequest as unknown as MsgRequest;
  const oldest = async (stream: string, subject: string) => (await bus.jsm.streams.getMessage(stream, first(subject)).catch(() => null))?.time.getTime();
  const collect = async (result: BatchObservableResult) => {
    const dispatch = await bus.jsm.streams.info(bus.names.dispatchStream, { subjects_filter: `${bus.names.prefix}.dispatch.>` }).catch(() => undefined);
    const dispatchBySender = new Map<string, { count: number; subjects: string[] }>();
    for (const [subject, count] of Object.entries(dispatch?.state.subjects ?? {})) {
      const sender = subject.slice(subject.lastIndexOf('.') + 1);
      const d = dispatchBySender.get(sender) ?? { count: 0, subjects: [] };
      d.count += count;
      d.subjects.push(subject);
      dispatchBySender.set(sender, d);
    }
    const now = Date.now();
    await Promise.all(
      [...src.lanes()].map(async (lane) => {
        const sender = lane.sender.id;
        const submitted = await lane.backlog().catch(() => undefined);
        if (submitted !== undefined) result.observe(depth, submitted, { sender, stage: 'submitted' });
        const d = dispatchBySender.get(sender);
        if (dispatch) result.observe(depth, d?.count ?? 0, { sender, stage: 'dispatch' });
        const times = await Promise.all([
          submitted ? oldest(bus.names.heldStream, bus.names.heldSubject(sender)) : undefined,
          ...(d?.subjects ?? []).map((s) => oldest(bus.names.dispatchStream, s)),
        ]);
        const earliest = Math.min(...times.filter((t): t is number => t !== undefined));
        result.observe(age, Number.isFinite(earliest) ? Math.max(0, (now - earliest) / 1000) : 0, { sender });
      }),
    );
  };
  meter.addBatchObservableCallback(collect, [depth, age]);
  return () => meter.removeBatchObservableCallback(collect, [depth, age]);
}
