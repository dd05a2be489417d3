import { create } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { SendMailRequestSchema } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { buildRequest, contentType, isUsageError, parseSendArgs, resolveTarget } from './args.js';

function usageError(argv: string[]): string {
  try {
    parseSendArgs(argv);
  } catch (err) {
    if (isUsageError(err)) return err.message;
    throw err;
  }
  throw new Error('expected a UsageError');
}

describe('parseSendArgs', () => {
  it('reads every option', () => {
    const args = parseSendArgs([
      '--sender',
      'no-reply',
      '--to',
      'a@b.example',
      '--to',
      'c@d.example, e@f.example',
      '--cc',
      'cc@b.example',
      '--bcc',
      'bcc@b.example',
      '--reply-to',
      'help@b.example',
      '--subject',
      'Hi',
      '--text',
      'plain',
      '--html',
      '<p>html</p>',
      '--attach',
      'a.pdf',
      '--attach',
      'b.txt',
      '--header',
      'X-Ticket=42',
      '--header',
      'X-Empty=',
      '--header',
      'X-Eq=a=b',
      '--idempotency-key',
      'k1',
      '--send-at',
      '2030-01-01T08:00:00Z',
      '--wait',
      '--address',
      'relay:50051',
      '--api-key',
      'key',
    ]);
    expect(args).toEqual({
      help: false,
      sender: 'no-reply',
      to: ['a@b.example', 'c@d.example', 'e@f.example'],
      cc: ['cc@b.example'],
      bcc: ['bcc@b.example'],
      replyTo: 'help@b.example',
      subject: 'Hi',
      text: 'plain',
      html: '<p>html</p>',
      attach: ['a.pdf', 'b.txt'],
      headers: { 'X-Ticket': '42', 'X-Empty': '', 'X-Eq': 'a=b' },
      idempotencyKey: 'k1',
      sendAt: new Date('2030-01-01T08:00:00Z'),
      wait: true,
      address: 'relay:50051',
      apiKey: 'key',
    });
  });

  it('has defaults for everything but a recipient and a subject', () => {
    const args = parseSendArgs(['--to', 'you@example.test', '--subject', 'hi']);
    expect(args).toMatchObject({ sender: undefined, cc: [], bcc: [], attach: [], headers: {}, wait: false, sendAt: undefined, address: undefined });
  });

  it('says what is wrong', () => {
    expect(usageError(['--subject', 'x'])).toContain('no recipient');
    expect(usageError(['--to', 'a@b.example'])).toBe('--subject is required');
    expect(usageError(['--to', 'a@b.example', '--subject', 'x', '--too', 'y'])).toContain("'--too'");
    expect(usageError(['--to', 'a@b.example', '--subject', 'x', 'stray'])).toContain('stray');
    expect(usageError(['--to', 'a@b.example', '--subject', 'x', '--header', 'X-Ticket: 42'])).toContain('expected NAME=VALUE');
    expect(usageError(['--to', 'a@b.example', '--subject', 'x', '--send-at', 'tomorrow'])).toContain('ISO 8601');
    expect(usageError(['--to', 'a@b.example', '--subject', 'x', '--send-at', '2030-13-45T00:00:00Z'])).toContain('ISO 8601');
  });

  it('lets --help through without the required options', () => {
    expect(parseSendArgs(['--help']).help).toBe(true);
  });
});

describe('resolveTarget', () => {
  const args = (extra: string[] = []) => parseSendArgs(['--to', 'a@b.example', '--subject', 'x', ...extra]);
  const stack = { address: '127.0.0.1:50061', apiKey: 'demo-key', sender: 'demo', captureDir: '/repo/.relay/captured' };

  it('uses the stack file when nothing else is given', () => {
    expect(resolveTarget(args(), {}, stack)).toEqual({ address: '127.0.0.1:50061', apiKey: 'demo-key', sender: 'demo', captureDir: '/repo/.relay/captured' });
  });

  it('prefers flags, then the environment, over the stack file', () => {
    expect(resolveTarget(args(['--api-key', 'flag', '--sender', 'billing']), { RELAY_API_KEY: 'env' }, stack)).toMatchObject({
      apiKey: 'flag',
      sender: 'billing',
    });
    expect(resolveTarget(args(), { RELAY_API_KEY: 'env' }, stack)).toMatchObject({ apiKey: 'env', sender: 'demo' });
  });

  it('never sends the demo key to another relay', () => {
    const t = resolveTarget(args(['--sender', 'no-reply']), { RELAY_ADDRESS: 'relay.campus.example:443' }, stack);
    expect(t).toEqual({ address: 'relay.campus.example:443', apiKey: undefined, sender: 'no-reply', captureDir: undefined });
    expect(resolveTarget(args(), { RELAY_ADDRESS: stack.address }, stack).apiKey).toBe('demo-key');
  });

  it('defaults the address to RELAY_GRPC_PORT, then 50051', () => {
    expect(resolveTarget(args(['--sender', 's']), {}, undefined).address).toBe('127.0.0.1:50051');
    expect(resolveTarget(args(['--sender', 's']), { RELAY_GRPC_PORT: '6000' }, undefined).address).toBe('127.0.0.1:6000');
    expect(resolveTarget(args(['--sender', 's', '--address', 'x:1']), { RELAY_ADDRESS: 'y:2' }, undefined).address).toBe('x:1');
  });

  it('asks for --sender when there is no stack file to take it from', () => {
    expect(() => resolveTarget(args(), {}, undefined)).toThrow('--sender is required');
  });
});

describe('buildRequest', () => {
  it('maps the arguments onto SendMailRequest', () => {
    const args = parseSendArgs([
      '--to',
      'a@b.example',
      '--subject',
      'x',
      '--html',
      '<p>hi</p>',
      '--header',
      'X-A=1',
      '--send-at',
      '2030-01-01T00:00:00Z',
      '--idempotency-key',
      'k',
    ]);
    const req = create(SendMailRequestSchema, buildRequest(args, 'demo', [{ path: '/tmp/report.PDF', content: new Uint8Array([1, 2]) }]));
    expect(req).toMatchObject({ sender: 'demo', to: ['a@b.example'], subject: 'x', text: '', html: '<p>hi</p>', headers: { 'X-A': '1' }, idempotencyKey: 'k' });
    expect(req.attachments[0]).toMatchObject({ filename: 'report.PDF', contentType: 'application/pdf', content: new Uint8Array([1, 2]) });
    expect(timestampDate(req.sendAt!).toISOString()).toBe('2030-01-01T00:00:00.000Z');
  });

  it('gives a message with no body a short text', () => {
    const req = buildRequest(parseSendArgs(['--to', 'a@b.example', '--subject', 'x']), 'demo', []);
    expect(req.text).toBe('Hello from Campus Relay.\n');
    expect(req.sendAt).toBeUndefined();
  });

  it('guesses content types', () => {
    expect(contentType('a.txt')).toBe('text/plain');
    expect(contentType('a.unknown')).toBe('application/octet-stream');
    expect(contentType('noext')).toBe('application/octet-stream');
  });
});
