/** What an operator meets first: --version, help, exit status, and the logs of a headless run. */
import { spawn, spawnSync } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { ensureCommands } from '../support/debian.js';

const serverJs = join(ROOT, 'dist/cli/server.js');
const clientJs = join(ROOT, 'dist/cli/client.js');

afterEach(async () => { await stopAll(); });

const runNode = (args: string[]): { status: number | null; stdout: string; stderr: string } =>
  spawnSync('node', args, { encoding: 'utf8', input: '', timeout: 10_000 });

describe('command line conventions', () => {
  it('--version, help, and exit status 0 / 1 / 2 with errors on stderr', () => {
    const version = (JSON.parse(spawnSync('cat', [join(ROOT, 'package.json')], { encoding: 'utf8' }).stdout) as { version: string }).version;
    for (const js of [serverJs, clientJs]) {
      const v = runNode([js, '--version']);
      expect(v.status).toBe(0);
      expect(v.stdout).toMatch(new RegExp(`^nxt-(server|client) ${version.replace(/\./g, '\\.')} \\(Node\\.js \\d+\\.\\d+\\.\\d+\\)\\n$`));
      const bad = runNode([js, '--no-such-flag']);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/unknown option '--no-such-flag'/);
      expect(runNode([js, '--help']).stdout).toMatch(/Exit status: 0 done; 1 failed.*2 bad usage/s);
    }
    const help = runNode([serverJs, 'help', 'sign']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/Usage: nxt-server sign \[options\] <file>/);
    // A failure (not a usage error) is 1: a client whose trusted key file is missing.
    const dir = tempDir();
    const noTrust = runNode([clientJs, '--server', '127.0.0.1', '--port', '9', '--trust', join(dir, 'none.pub'), '--data-dir', join(dir, 'c')]);
    expect(noTrust.status).toBe(1);
    expect(noTrust.stderr).toMatch(/^nxt-client: /);
    expect(noTrust.stdout).toBe('');
    // A bad value is a usage error, said before anything starts.
    for (const rate of ['fast', '0', '-5', '1e9']) {
      const badRate = runNode([serverJs, '--port', '0', '--state-dir', join(dir, 's'), '--max-rate', rate]);
      expect(badRate.status).toBe(2);
      expect(badRate.stderr).toContain(`--max-rate "${rate}" must be 0.1-100000 Mbit/s`);
    }
    // A delay longer than a timer can wait (Node's would fire after 1 ms: a probation of a month
    // would commit at once), or a renewal rarer than daily.
    const longRenew = runNode([serverJs, '--port', '0', '--state-dir', join(dir, 's'), '--renew', '90000000']);
    expect(longRenew.status).toBe(2);
    expect(longRenew.stderr).toContain('--renew is 90000000 ms: at most 86400000 ms (1.0 days)');
    const longProbation = runNode([clientJs, '--server', '127.0.0.1', '--port', '9', '--trust', join(dir, 'none.pub'), '--data-dir', join(dir, 'c'), '--probation', '3000000']);
    expect(longProbation.status).toBe(2);
    expect(longProbation.stderr).toContain('--probation is 3000000000 ms: at most 2147483647 ms (24.9 days)');
  });
});

describe('a port another program holds', () => {
  it('is said as such, with what to do, and exit status 1', async () => {
    const dir = tempDir();
    const { port } = await startServer(join(dir, 'first'));
    const second = runNode([serverJs, '--port', String(port), '--state-dir', join(dir, 'second')]);
    expect(second.status).toBe(1);
    expect(second.stderr).toBe(`nxt-server: UDP port ${port} is in use (another nxt-server, or another program): choose another with --port\n`);
  });
});

describe('the server\'s launchers', () => {
  // glibc rewrites GLIBC_TUNABLES as it reads it, so a running server's environment cannot show
  // what its launcher set: a stand-in for node, first on the PATH, prints what it was given.
  const bin = tempDir('nxt-fake-node-');
  writeFileSync(join(bin, 'node'), '#!/bin/sh\necho "tunables=$GLIBC_TUNABLES"\necho "args=$*"\n', { mode: 0o755 });
  const launch = ([shell, script]: readonly [string, string], env: { GLIBC_TUNABLES?: string; NODE_OPTIONS?: string } = {}): { tunables: string; args: string } => {
    const given: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH}`, NXT_STATE_DIR: join(bin, 'state') };
    delete given.GLIBC_TUNABLES;
    delete given.NODE_OPTIONS;
    const run = spawnSync(shell, [script, '0'], { encoding: 'utf8', timeout: 10_000, env: { ...given, ...env } });
    expect(run.status, run.stderr).toBe(0);
    const [tunables, args] = run.stdout.trim().split('\n');
    return { tunables: tunables!.replace(/^tunables=/, ''), args: args!.replace(/^args=/, '') };
  };
  const launchers = [['bash', join(ROOT, 'scripts/UpdateServer.sh')], ['sh', join(ROOT, 'packaging/debian/nxt-server.sh')]] as const;

  it('keep the pages glibc frees (a 64 MiB trim threshold) beside the caller\'s tunables, unless the caller set one', () => {
    for (const script of launchers) {
      expect(launch(script).tunables).toBe('glibc.malloc.trim_threshold=67108864');
      expect(launch(script, { GLIBC_TUNABLES: 'glibc.malloc.arena_max=4' }).tunables).toBe('glibc.malloc.arena_max=4:glibc.malloc.trim_threshold=67108864');
      expect(launch(script, { GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=131072' }).tunables).toBe('glibc.malloc.trim_threshold=131072');
    }
    expect(readFileSync(join(ROOT, 'Dockerfile.server'), 'utf8')).toMatch(/^ENV GLIBC_TUNABLES=glibc\.malloc\.trim_threshold=67108864$/m);
  });

  it('start node with a small young generation (2 MiB semi-spaces), unless the caller\'s NODE_OPTIONS sets its size', () => {
    for (const script of launchers) {
      expect(launch(script).args).toMatch(/^--max-semi-space-size=2 \S+\/dist\/cli\/server\.js /);
      for (const own of ['--max-semi-space-size=8', '--enable-source-maps --max_semi_space_size=8']) {
        const { args } = launch(script, { NODE_OPTIONS: own });
        expect(args).toMatch(/^\S+\/dist\/cli\/server\.js /);
        expect(args).not.toContain('semi');
      }
      // Other options of the caller's change nothing.
      expect(launch(script, { NODE_OPTIONS: '--enable-source-maps' }).args).toMatch(/^--max-semi-space-size=2 /);
    }
    expect(readFileSync(join(ROOT, 'Dockerfile.server'), 'utf8')).toMatch(/^ENV NODE_OPTIONS=--max-semi-space-size=2$/m);
  });
});

describe('a headless server (standard input /dev/null, as under systemd)', () => {
  it('writes JSON log records with time and level, a warning on stderr, and never a prompt', async () => {
    const dir = tempDir();
    const state = join(dir, 'server');
    const child = spawn('node', [serverJs, '--port', '0', '--state-dir', state, '--notify-webhook', 'http://127.0.0.1:9/alerts'], {
      stdio: [openSync('/dev/null', 'r'), 'pipe', 'pipe'], env: { ...process.env, NXT_ENROLL_TOKEN: '' },
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const listening = await new Promise<boolean>((res) => {
      const t = setTimeout(() => res(false), 10_000);
      child.stdout!.on('data', () => { if (/listening on UDP port/.test(out)) { clearTimeout(t); res(true); } });
    });
    expect(listening).toBe(true);
    // A command through ctl that fails logs nothing on the server's stdout; its own stderr says why.
    const ctl = spawnSync('node', [serverJs, 'ctl', '-s', state, 'push', 'missing.mjs'], { encoding: 'utf8', cwd: dir });
    expect(ctl.status).toBe(1);
    expect(ctl.stderr).toMatch(/no-such-file/);
    // A warning (a device trusting another server's key) is a record on stderr.
    const port = Number(/listening on UDP port (\d+)/.exec(out)![1]);
    spawnSync('node', [serverJs, 'keygen', '--state-dir', join(dir, 'other')]);
    await startClient('stranger', port, join(dir, 'stranger'), join(dir, 'other', 'release.pub'), '127.0.0.1', [], { until: /does not take our handshake/ });
    await new Promise<void>((res) => {
      const check = (): void => { if (/another server's identity key/.test(err)) res(); };
      child.stderr!.on('data', check);
      check();
    });
    await stopAll();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((res) => child.on('exit', res));
    expect(code).toBe(0);
    const records = out.trim().split('\n').map((l) => JSON.parse(l) as { level: string; time: string; msg: string; program: string });
    expect(records.length).toBeGreaterThanOrEqual(2);
    for (const r of records) {
      expect(r).toMatchObject({ level: 'info', program: 'nxt-server' });
      expect(Date.parse(r.time)).not.toBeNaN();
    }
    expect(out).not.toMatch(/NxtServer#/);
    const warning = JSON.parse(err.trim().split('\n')[0]!) as { level: string; msg: string };
    expect(warning).toMatchObject({ level: 'warn', msg: expect.stringMatching(/^warning: a device at 127\.0\.0\.1:\d+ shakes hands with another server's identity key/) });
    expect(out).not.toMatch(/another server's identity key/);
  });
});

describe('output no longer read', () => {
  // A server run as `nxt-server | tee log`, the tee stopped; `nxt-server ctl help | head -3`.
  it('stops neither the server, nor a device, nor a ctl command', async () => {
    const dir = tempDir();
    const state = join(dir, 'server');
    const { proc: server, port } = await startServer(state);
    const client = await startClient('c', port, join(dir, 'c'), join(state, 'release.pub'));
    server.closeOutput();
    client.closeOutput();
    // Both print as the push goes (the server its lines, the device its new version): into
    // pipes nobody reads. The push still succeeds, and both still answer afterwards.
    const push = spawnSync('node', [serverJs, 'ctl', '-s', state, 'push', join(ROOT, 'plugins/libfunctional_2_0.mjs')], { encoding: 'utf8', timeout: 20_000 });
    expect(push.stderr).toBe('');
    expect(push.status).toBe(0);
    const versions = spawnSync('node', [serverJs, 'ctl', '-s', state, 'versions'], { encoding: 'utf8', timeout: 20_000 });
    expect(versions.status).toBe(0);
    expect(versions.stdout).toMatch(/release 2\.0\.0 +8\.6 nxtgen/);
    expect(server.alive && client.alive).toBe(true);
    // ctl's own output into a pipe already closed: the command runs, its status is its own, and
    // no stack trace. (The read end is closed before ctl starts: no race with its writes.)
    const closedPipe = 'import os, subprocess, sys\nr, w = os.pipe()\nos.close(r)\np = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)\nsys.stdout.write(f"{p.returncode}\\n{p.stderr.decode()}")\n';
    for (const [words, status] of [[['help'], 0], [['push', join(dir, 'missing.mjs')], 1]] as const) {
      const run = spawnSync('python3', ['-c', closedPipe, 'node', serverJs, 'ctl', '-s', state, ...words], { encoding: 'utf8', timeout: 20_000 });
      const [code, ...stderr] = run.stdout.split('\n');
      expect(Number(code), run.stdout).toBe(status);
      expect(stderr.join('\n')).not.toMatch(/EPIPE|at .*\.js:\d+/);
    }
    expect(server.alive).toBe(true);
  });
});

describe('a device that trusts another server\'s keys', () => {
  it('is told so within seconds, and both sides say which key is which', async () => {
    const dir = tempDir();
    const { proc: server, port } = await startServer(join(dir, 'server'));
    // Keys of a server that is not this one (e.g. a client packaged from another checkout).
    spawnSync('node', [serverJs, 'keygen', '--state-dir', join(dir, 'other')], { encoding: 'utf8' });
    const t0 = Date.now();
    const client = await startClient('c', port, join(dir, 'c'), join(dir, 'other', 'release.pub'), '127.0.0.1', [], { until: /does not take our handshake/ });
    expect(Date.now() - t0).toBeLessThan(5000);
    const ours = /trusting server key (SHA256:\S+)/.exec(client.output)![1]!;
    const theirs = /clients trust .* \(key (SHA256:\S+)\)/.exec(server.output)![1]!;
    expect(ours).not.toBe(theirs);
    expect(client.output).toMatch(new RegExp(`its identity key is ${theirs.replace(/[+/]/g, '\\$&')}, this client trusts ${ours.replace(/[+/]/g, '\\$&')}`));
    await server.waitFor(/warning: a device at 127\.0\.0\.1:\d+ shakes hands with another server's identity key: it must trust this server's identity\.pub/);
    // Said once, not on every retry: look again once the server has refused three handshakes.
    let refused = 0;
    for (let polls = 0; refused < 3 && polls < 50; polls++) {
      refused = Number(/bad handshake (\d+)/.exec(await server.run('stats', /bad handshake \d+/))![1]);
      if (refused < 3) await new Promise((res) => setTimeout(res, 200));
    }
    expect(refused).toBeGreaterThanOrEqual(3);
    expect(client.output.match(/does not take our handshake/g)).toHaveLength(1);
    expect(client.output).not.toMatch(/registered with the server/);
  });
});

describe('a client that stops', () => {
  it('says goodbye: the server shows it offline at once, not when its lease lapses', async () => {
    const dir = tempDir();
    const { proc: server, port } = await startServer(join(dir, 'server'), ['--renew', '60000']); // a lease of 3 minutes
    const client = await startClient('c', port, join(dir, 'c'), join(dir, 'server', 'release.pub'));
    const id = /nxt client ([0-9a-f]{12})/.exec(client.output)![1]!;
    expect(await server.run('clients --json', /\]\n/)).toMatch(/"online":true/);
    await client.stop('SIGTERM');
    await server.waitFor(new RegExp(`client ${id} went offline \\(it said goodbye\\)`));
    expect(await server.run('clients --json', /\]\n/)).toMatch(/"online":false/);
  });
});

describe('Ctrl-C at a console on a terminal', () => {
  it('stops the server and the client, exit status 0 (it used to only pause their input)', () => {
    expect(ensureCommands(['python3'], ['python3'], 'the terminal test')).toBe(true);
    const dir = tempDir();
    const script = join(ROOT, 'test/support/ctrl-c.py');
    const server = spawnSync('python3', [script, 'NxtServer# ', '15', 'node', serverJs, '--port', '0', '--state-dir', join(dir, 'server')], { encoding: 'utf8' });
    expect(server.stdout.trim()).toBe('0');
    spawnSync('node', [serverJs, 'keygen', '--state-dir', join(dir, 'keys')]);
    const client = spawnSync('python3', [script, 'NxtClient# ', '15', 'node', clientJs, '--server', '127.0.0.1', '--port', '9', '--trust', join(dir, 'keys/release.pub'), '--data-dir', join(dir, 'c')], { encoding: 'utf8' });
    expect(client.stdout.trim()).toBe('0');
  });
});
