import { describe, expect, it } from 'vitest';
import { type SaslStep, startSasl } from './sasl.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Runs an exchange: the challenges the server sent, then how it ended. */
function run(mechanism: string, initial: string | undefined, responses: string[]) {
  const challenges: string[] = [];
  let step: SaslStep = startSasl(mechanism, initial);
  for (const r of responses) {
    if (step.kind !== 'challenge') throw new Error(`no challenge left for ${r}`);
    challenges.push(step.text);
    step = step.next(r);
  }
  if (step.kind === 'challenge') return { challenges, pending: step.text };
  return { challenges, end: step.kind === 'refuse' ? `${step.code} ${step.text}` : step.credentials };
}

describe('startSasl', () => {
  it('PLAIN with an initial response, and after an empty challenge', () => {
    expect(run('PLAIN', b64('\0ann\0pw'), [])).toEqual({ challenges: [], end: { method: 'PLAIN', username: 'ann', password: 'pw' } });
    expect(run('plain', undefined, [b64('admin\0ann\0pw')])).toEqual({ challenges: [''], end: { method: 'PLAIN', username: 'ann', password: 'pw' } });
  });

  it('LOGIN asks for the username, then the password; the username may come as initial response', () => {
    expect(run('LOGIN', undefined, [b64('bob'), b64('pässword')])).toEqual({
      challenges: ['VXNlcm5hbWU6', 'UGFzc3dvcmQ6'],
      end: { method: 'LOGIN', username: 'bob', password: 'pässword' },
    });
    expect(run('LOGIN', b64('bob'), [])).toEqual({ challenges: [], pending: 'UGFzc3dvcmQ6' });
  });

  it('refuses a cancel, bad base64, a malformed PLAIN response and an unknown mechanism', () => {
    expect(run('LOGIN', undefined, ['*']).end).toBe('501 5.7.0 Authentication cancelled');
    expect(run('LOGIN', b64('bob'), ['*']).end).toBe('501 5.7.0 Authentication cancelled');
    expect(run('PLAIN', 'bad!', []).end).toBe('501 5.5.2 Invalid base64 in the AUTH response');
    expect(run('PLAIN', '=', []).end).toBe('501 5.5.2 PLAIN takes authzid NUL username NUL password');
    expect(run('CRAM-MD5', undefined, []).end).toBe('504 5.5.4 Unrecognized authentication type (PLAIN or LOGIN)');
  });
});
