import { describe, expect, it } from 'vitest';
import { createNatsAuth, natsServerConfig, SERVICE_KINDS, servicePermissions } from './nats-auth.js';

describe('NATS permissions per service', () => {
  it.each(SERVICE_KINDS)('%s: no stream deletion, updates by the scheduler only, no wildcard over everything, no inbox but its own', (kind) => {
    const p = servicePermissions(kind, 'relay');
    for (const s of p.publish) {
      expect(s).not.toMatch(/STREAM\.DELETE/);
      // Ingest keeps its own console sign-out bucket's age limit at the sign-in lifetime.
      if (kind === 'ingest' && s === '$JS.API.STREAM.UPDATE.KV_relay-console-revoked') continue;
      if (kind !== 'scheduler') expect(s).not.toMatch(/STREAM\.UPDATE/);
      expect(s).not.toMatch(/STREAM\.UPDATE\..*secrets/);
      expect(s).not.toMatch(/^(>|\$JS\.>|\$JS\.API\.>|\$JS\.API\.STREAM\.>|_INBOX\.>)$/);
    }
    // Ingest also hears status events (WatchMessages).
    expect(p.subscribe).toEqual(kind === 'ingest' ? [`_INBOX.${kind}.>`, 'relay.status.>'] : [`_INBOX.${kind}.>`]);
  });

  it('lets only the scheduler dispatch, and each sender pull only its own transport', () => {
    const dispatching = SERVICE_KINDS.filter((k) => servicePermissions(k, 'relay').publish.includes('relay.dispatch.>'));
    expect(dispatching).toEqual(['scheduler']);
    const smtp = servicePermissions('smtp-sender', 'relay').publish;
    expect(smtp).toContain('$JS.API.CONSUMER.MSG.NEXT.RELAY_DISPATCH.smtp-sender');
    expect(smtp.filter((s) => s.includes('graph'))).toEqual([]);
    expect(smtp).toContain('$JS.API.CONSUMER.CREATE.RELAY_DISPATCH.smtp-sender.relay.dispatch.smtp.>');
  });

  it('keeps the secrets bucket to credentials and the body store from credentials', () => {
    for (const kind of SERVICE_KINDS) {
      // Every service may look up and create the shared streams; what matters is reading and writing.
      const p = servicePermissions(kind, 'relay')
        .publish.filter((s) => !/^\$JS\.API\.STREAM\.(INFO|CREATE|UPDATE)\./.test(s))
        .join(' ');
      expect(p.includes('relay-secrets'), kind).toBe(kind === 'credentials');
      if (kind === 'credentials') expect(p, kind).not.toContain('relay-bodies');
      // Dead letters: only ingest reads the failed store (RetryMessages) and the message index.
      expect(p.includes('$JS.API.CONSUMER.CREATE.OBJ_relay-failed'), kind).toBe(kind === 'ingest');
      expect(p.includes('relay-messages'), kind).toBe(kind === 'ingest');
    }
  });

  it('allows the JetStream calls of dead letters, the message index and the held-mail sweeper, to those that make them', () => {
    const may = (kind: (typeof SERVICE_KINDS)[number], subject: string) => servicePermissions(kind, 'relay').publish.includes(subject);
    for (const kind of SERVICE_KINDS) {
      // Every service makes the failed store and the message index at start.
      for (const s of ['OBJ_relay-failed', 'KV_relay-messages'])
        for (const op of ['INFO', 'CREATE']) expect(may(kind, `$JS.API.STREAM.${op}.${s}`), `${kind} ${op} ${s}`).toBe(true);
      // Keeping a failed message's envelope: scheduler and senders.
      expect(may(kind, '$O.relay-failed.>'), kind).toBe(kind === 'scheduler' || kind.endsWith('-sender'));
    }
    // Ingest's durables on the status stream, only under their own names.
    for (const durable of ['messages-index', 'ingest-client-budget']) {
      expect(may('ingest', `$JS.API.CONSUMER.MSG.NEXT.RELAY_STATUS.${durable}`)).toBe(true);
      expect(may('ingest', `$JS.API.CONSUMER.INFO.RELAY_STATUS.${durable}`)).toBe(true);
    }
    expect(servicePermissions('ingest', 'relay').publish.filter((s) => s.startsWith('$JS.API.CONSUMER.') && s.includes('RELAY_STATUS.>'))).toEqual([]);
    expect(may('ingest', '$KV.relay-messages.>')).toBe(true);
    // Console sign-outs: ingest alone writes and watches them.
    for (const kind of SERVICE_KINDS) {
      expect(may(kind, '$KV.relay-console-revoked.>'), kind).toBe(kind === 'ingest');
      expect(may(kind, '$JS.API.CONSUMER.CREATE.KV_relay-console-revoked'), kind).toBe(kind === 'ingest');
    }
    // Hard bounces: the senders' feedback readers write the suppression bucket; ingest watches it and deletes entries.
    for (const kind of SERVICE_KINDS) {
      expect(may(kind, '$KV.relay-suppressed.>'), kind).toBe(kind === 'ingest' || kind.endsWith('-sender'));
      expect(may(kind, '$JS.API.CONSUMER.CREATE.KV_relay-suppressed'), kind).toBe(kind === 'ingest' || kind.endsWith('-sender'));
    }
    // Delivery-report passes: the senders share them through the report readers' bucket.
    for (const kind of SERVICE_KINDS) expect(may(kind, '$KV.relay-report-readers.>'), kind).toBe(kind.endsWith('-sender'));
    // Where copies to Sent stand: the smtp-sender records it, ingest reads it for GetMessage.
    for (const kind of SERVICE_KINDS) {
      expect(may(kind, '$KV.relay-sent-copies.>'), kind).toBe(kind === 'smtp-sender');
      expect(may(kind, '$JS.API.DIRECT.GET.KV_relay-sent-copies.>'), kind).toBe(kind === 'ingest' || kind === 'smtp-sender');
      expect(may(kind, '$JS.API.STREAM.CREATE.KV_relay-sent-copies'), kind).toBe(kind === 'ingest' || kind === 'smtp-sender');
    }
    // GetQueueStats reads the pacing log.
    expect(may('ingest', '$JS.API.CONSUMER.CREATE.RELAY_PACING')).toBe(true);
    // The sweeper reads held mail without consuming it and deletes what expired.
    expect(may('scheduler', '$JS.API.DIRECT.GET.RELAY_HELD')).toBe(true);
    expect(may('scheduler', '$JS.API.STREAM.MSG.DELETE.RELAY_HELD')).toBe(true);
    expect(SERVICE_KINDS.filter((k) => servicePermissions(k, 'relay').publish.some((s) => s.includes('STREAM.MSG.DELETE')))).toEqual(['scheduler']);
  });

  it('puts public keys only into the server configuration', () => {
    const auth = createNatsAuth('relay');
    const conf = natsServerConfig({ host: '127.0.0.1', port: 4222, storeDir: '/data', auth });
    for (const u of auth.users) {
      expect(conf).toContain(u.publicKey);
      expect(conf).not.toContain(u.seed);
    }
    // Seeds given back give the same users (a rerun keeps the keys deployed services hold).
    const again = createNatsAuth('relay', Object.fromEntries(auth.users.map((u) => [u.kind, u.seed])));
    expect(again.users.map((u) => u.publicKey)).toEqual(auth.users.map((u) => u.publicKey));
  });
});
