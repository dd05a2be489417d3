// A steady send for .ci/containers.sh: COUNT messages, one every EVERY_MS, each retried with the
// same idempotency key until SendMail answers OK (as a caller following the contract does while a
// broker node is away); one line "accepted N ID" per message in PROGRESS; then waits until every
// accepted message is SENT. Exit 0 when all are, 1 otherwise (naming the others).
//   node .ci/steady-send.mjs ADDRESS API_KEY SENDER LABEL COUNT EVERY_MS PROGRESS
import { appendFileSync, writeFileSync } from 'node:fs';
import { createRelayClient } from '@relay/client';
import { MessageState } from '@relay/proto';

const [address, apiKey, sender, label, count, everyMs, progress] = process.argv.slice(2);
const ACCEPT_WITHIN_MS = 60_000;
const SENT_WITHIN_MS = 90_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const client = createRelayClient({ address, apiKey });
writeFileSync(progress, '');

async function submit(n) {
  const req = { sender, to: [`student${n}@campus.test`], subject: `${label} #${n}`, text: `message ${n}`, idempotencyKey: `${label}-${n}` };
  const until = Date.now() + ACCEPT_WITHIN_MS;
  for (;;) {
    try {
      const res = await client.sendMail(req, { deadlineMs: 5_000 });
      appendFileSync(progress, `accepted ${n} ${res.messageId}\n`);
      return res.messageId;
    } catch (err) {
      if (Date.now() > until) throw new Error(`message ${n} not accepted within ${ACCEPT_WITHIN_MS} ms: ${err.message}`);
      await sleep(200);
    }
  }
}

const pending = [];
for (let n = 0; n < Number(count); n++) {
  pending.push(submit(n));
  await sleep(Number(everyMs));
}
const ids = await Promise.all(pending);

const sent = new Set();
const last = new Map();
const until = Date.now() + SENT_WITHIN_MS;
while (sent.size < ids.length && Date.now() < until) {
  for (const id of ids) {
    if (sent.has(id)) continue;
    const res = await client.getMessage(id, { deadlineMs: 5_000 }).catch(() => undefined);
    if (res) last.set(id, `${MessageState[res.state]} ${res.lastError}`);
    if (res?.state === MessageState.SENT) sent.add(id);
  }
  if (sent.size < ids.length) await sleep(250);
}
client.close();
console.log(`steady send: ${ids.length} accepted, ${sent.size} SENT`);
for (const id of ids) if (!sent.has(id)) console.log(`  not SENT: ${id} ${last.get(id) ?? 'no status'}`);
process.exit(sent.size === ids.length ? 0 : 1);
