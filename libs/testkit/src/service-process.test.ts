import { describe, expect, it } from 'vitest';
import { nodeArgsFor, readyPorts, startProcess } from './service-process.js';

const line = (o: object) => JSON.stringify(o);

describe('readyPorts', () => {
  it('reads numeric ports of a ready line only', () => {
    expect(readyPorts(line({ msg: 'ready', ports: { grpc: 1, http: 'x' } }))).toEqual({ grpc: 1 });
    expect(readyPorts(line({ msg: 'ready' }))).toEqual({});
    expect(readyPorts(line({ msg: 'not ready' }))).toBeUndefined();
    expect(readyPorts('{"msg":"ready"')).toBeUndefined();
    expect(readyPorts('ready')).toBeUndefined();
  });
});

describe('nodeArgsFor', () => {
  it('puts extra flags before the telemetry module, and the script last', () => {
    const args = nodeArgsFor('/repo', '/repo/x.js', { extra: ['--cpu-prof'] });
    expect(args.slice(-4)).toEqual(['--cpu-prof', '--import', 'file:///repo/libs/telemetry/dist/register.js', '/repo/x.js']);
    expect(nodeArgsFor('/repo', '/repo/x.js', { telemetry: false }).slice(-2)).not.toContain('--import');
  });
});

describe('startProcess', () => {
  it('says why a command could not be started', async () => {
    const child = startProcess({ name: 'nothing', command: '/nonexistent/relay-test-binary', args: [], env: {} }, () => {});
    await expect(child.ready(5_000)).rejects.toThrow(/nothing: cannot start \/nonexistent\/relay-test-binary: .*ENOENT/);
    expect(await child.exited).toEqual({ code: null, signal: null });
  });

  it('hands each line to onLine with its stream, and SIGKILLs a process that ignores SIGTERM after the grace', async () => {
    const seen: string[] = [];
    const script = `process.on('SIGTERM', () => console.error('ignored')); console.log(JSON.stringify({ msg: 'ready', ports: { x: 7 } })); setInterval(() => {}, 1000);`;
    const child = startProcess({ name: 'stubborn', command: process.execPath, args: ['-e', script], env: {} }, (l, s) => seen.push(`${s}: ${l}`));
    expect(await child.ready(10_000)).toEqual({ x: 7 });
    expect(await child.stop('SIGTERM', 500)).toEqual({ code: null, signal: 'SIGKILL' });
    expect(seen).toEqual(['stdout: {"msg":"ready","ports":{"x":7}}', 'stderr: ignored']);
  });
});
