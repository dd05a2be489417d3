import type { SenderLane } from './lane.js';
import type { RedisPacer } from './redis-pacer.js';

/** Prometheus text for each sender's pacing: backlog, waiting, next slot, recipients left today. */
export async function pacingMetrics(lanes: Iterable<SenderLane>, pacer: RedisPacer | undefined): Promise<string> {
  const rows: Record<string, string[]> = {
    relay_scheduler_backlog_messages: [],
    relay_pacing_waiting_messages: [],
    relay_pacing_next_slot_seconds: [],
    relay_pacing_daily_recipients_remaining: [],
    relay_pacing_granted_total: [],
  };
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
    rows.relay_pacing_next_slot_seconds!.push(`relay_pacing_next_slot_seconds${label} ${st.nextSlotAt ? Math.max(0, (st.nextSlotAt - now) / 1000).toFixed(3) : 0}`);
    if (s.rate?.dailyRecipients) {
      const used = await pacer.recipientsToday(s.id);
      if (used !== undefined) rows.relay_pacing_daily_recipients_remaining!.push(`relay_pacing_daily_recipients_remaining${label} ${Math.max(0, s.rate.dailyRecipients - used)}`);
    }
  }
  const help: Record<string, string> = {
    relay_scheduler_backlog_messages: 'gauge Messages of a sender waiting in the scheduler (stream and in hand)',
    relay_pacing_waiting_messages: 'gauge Messages this replica holds waiting for a pacing slot',
    relay_pacing_next_slot_seconds: 'gauge Seconds until the sender\'s next slot opens (0 when not waiting)',
    relay_pacing_daily_recipients_remaining: 'gauge Recipients the sender may still reach in the rolling day',
    relay_pacing_granted_total: 'counter Messages released by this replica\'s pacer',
  };
  return Object.entries(rows)
    .map(([name, lines]) => {
      const [type, ...text] = help[name]!.split(' ');
      return [`# HELP ${name} ${text.join(' ')}`, `# TYPE ${name} ${type}`, ...lines].join('\n');
    })
    .join('\n') + '\n';
}
