import { call } from '../api';
import { outcomeRows, sentCopySummary, type RecipientOutcomeJson, type SentCopyJson } from '../outcomes';
import { ErrorNote, stateName, useLoad, when } from '../ui';

interface Message {
  messageId?: string;
  state?: string;
  sender?: string;
  attempts?: number;
  lastError?: string;
  history?: Array<{ state?: string; at?: string; detail?: string; attempt?: number }>;
  recipientOutcomes?: RecipientOutcomeJson[];
  sentCopy?: SentCopyJson;
}

/** One message (`#/messages/<id>`): where it is and its timeline, read again while it moves on. */
export function MessagePage({ id }: { id: string }) {
  const { data, error } = useLoad(() => call<Message>('GetMessage', { messageId: id }), [id], 5_000);
  const copy = sentCopySummary(data?.sentCopy);
  return (
    <section aria-labelledby="message-title">
      <p>
        <a href="#/messages">← Messages</a>
      </p>
      <h1 id="message-title">Message {id}</h1>
      <ErrorNote error={error} />
      {data ? (
        <>
          <dl class="facts">
            <dt>State</dt>
            <dd>{stateName(data.state)}</dd>
            <dt>Sender</dt>
            <dd>{data.sender ? <a href={`#/senders/${encodeURIComponent(data.sender)}`}>{data.sender}</a> : '—'}</dd>
            <dt>Attempts</dt>
            <dd>{data.attempts ?? 0}</dd>
            {data.lastError ? (
              <>
                <dt>Last error</dt>
                <dd>{data.lastError}</dd>
              </>
            ) : null}
            {copy ? (
              <>
                <dt>Copy to Sent</dt>
                <dd>
                  {copy.text} {when(copy.at)}
                  {copy.error ? <div class="hint">{copy.error}</div> : null}
                </dd>
              </>
            ) : null}
          </dl>
          {data.recipientOutcomes?.length ? (
            <>
              <h2>Recipients</h2>
              <div class="table-wrap">
                <table aria-label={`Delivery reports of message ${id}`}>
                  <thead>
                    <tr>
                      <th scope="col">Recipient</th>
                      <th scope="col">Outcome</th>
                      <th scope="col">Reply</th>
                      <th scope="col">Reported</th>
                    </tr>
                  </thead>
                  <tbody>
                    {outcomeRows(data.recipientOutcomes).map((r) => (
                      <tr key={r.recipient}>
                        <td>{r.recipient}</td>
                        <td>{r.outcome}</td>
                        <td>{r.reply}</td>
                        <td>{when(r.at)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          ) : null}
          <h2>Timeline</h2>
          <ol class="timeline" aria-label={`History of message ${id}`}>
            {(data.history ?? []).map((h, i) => (
              <li key={`${h.at}-${i}`}>
                <strong>{stateName(h.state)}</strong> {when(h.at)}
                {h.attempt ? ` (attempt ${h.attempt})` : ''} {h.detail ? <div class="hint">{h.detail}</div> : null}
              </li>
            ))}
          </ol>
        </>
      ) : null}
    </section>
  );
}
