import { describe, expect, it } from 'vitest';
import { createNatsAuth, natsServerConfig, SERVICE_KINDS, servicePermissions } from './nats-auth.js';

describe('NATS permissions per service', () => {
  it.each(SERVICE_KINDS)('%s: no stream deletion or update, no wildcard over everything, only its own inbox', (kind) => {
    const p = servicePermissions(kind, 'relay');
    for (const s of p.publish) {
      expect(s).not.toMatch(/STREAM\.(DELETE|UPDATE)/);
      expect(s).not.toMatch(/^(>|\$JS\.>|\$JS\.API\.>|\$JS\.API\.STREAM\.>|_INBOX\.>)$/);
    }
    expect(p.subscribe).toEqual([`_INBOX.${kind}.>`]);
  });

  it('lets only the scheduler dispatch, and each sender pull only its own transport', () => {
    const dispatching = SERVICE_KINDS.filter((k) => servicePermissions(k, 'relay').publish.includes('relay.dispatch.>'));
    expect(dispatching).toEqual(['scheduler']);
    const smtp = servicePermissions('smtp-sender', 'relay').publish;
    expect(smtp).toContain('$JS.API.CONSUMER.MSG.NEXT.RELAY_DISPATCH.smtp-sender');
    expect(smtp.filter((s) => s.includes('graph'))).toEqual([]);
    expect(smtp).toContain('$JS.API.CONSUMER.CREATE.RELAY_DISPATCH.smtp-sender.relay.dispatch.smtp.>');
  });

  it('keeps the secrets bucket to credentials and the body store from the scheduler', () => {
    for (const kind of SERVICE_KINDS) {
      // Every service may look up and create the shared streams; what matters is reading and writing.
      const p = servicePermissions(kind, 'relay')
        .publish.filter((s) => !/^\$JS\.API\.STREAM\.(INFO|CREATE)\./.test(s))
        .join(' ');
      expect(p.includes('relay-secrets'), kind).toBe(kind === 'credentials');
      if (kind === 'scheduler' || kind === 'credentials') expect(p, kind).not.toContain('relay-bodies');
    }
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
