import type { ListSuppressionsRequest } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { at, relay, relayCli, useFakeRelay } from './testing/fixture.js';

useFakeRelay();

const entry = {
  address: 'gone@students.example',
  at,
  status: '5.1.1',
  diagnostic: '550 5.1.1 User unknown',
  messageId: '01a2-b3',
  sender: 'registrar',
  key: 'ab12',
};

describe('relay suppressions', () => {
  it('lists the hard bounces, and says how many were left out', async () => {
    relay.on('listSuppressions', () => ({ suppressions: [entry], total: 3n }));
    const res = await relayCli(['suppressions', 'list', '--limit', '1']);
    expect(res.code).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ADDRESS\s+BOUNCED\s+STATUS\s+SENDER\s+MESSAGE\s+DIAGNOSTIC$/);
    expect(lines[1]).toMatch(/^gone@students\.example\s+2030-01-02 03:04:05Z\s+5\.1\.1\s+registrar\s+01a2-b3\s+550 5\.1\.1 User unknown$/);
    expect(res.stderr).toContain('1 of 3 shown; raise --limit for more');
    expect(relay.calls[0]).toMatchObject({ method: 'listSuppressions', request: { address: '', limit: 1 } });
  });

  it('looks up one address, says when it is not listed, and checks --limit', async () => {
    relay.on('listSuppressions', (req: ListSuppressionsRequest) => ({ suppressions: req.address === 'gone@students.example' ? [entry] : [], total: 0n }));
    expect((await relayCli(['suppressions', 'list', 'gone@students.example'])).stdout).toContain('gone@students.example');
    const none = await relayCli(['suppressions', 'list', 'ok@students.example']);
    expect(none).toMatchObject({ code: 0, stdout: '' });
    expect(none.stderr).toContain('ok@students.example is not on the suppression list');
    const bad = await relayCli(['suppressions', 'list', '--limit', '5000']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--limit: a whole number from 1 to 1000');
  });

  it('removes an address, and says when it was not listed', async () => {
    relay.on('deleteSuppression', (req: { address: string }) => ({ deleted: req.address === 'gone@students.example' }));
    const done = await relayCli(['suppressions', 'remove', 'gone@students.example']);
    expect(done).toMatchObject({ code: 0, stdout: 'removed gone@students.example from the suppression list\n' });
    const none = await relayCli(['suppressions', 'remove', 'ok@students.example']);
    expect(none.stderr).toContain('ok@students.example was not on the suppression list');
    expect(relay.calls.at(-1)).toMatchObject({ method: 'deleteSuppression', request: { address: 'ok@students.example' } });
  });
});
