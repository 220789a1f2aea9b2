/** What an operator meets first: --version, help, exit status, and the logs of a headless run. */
import { spawn, spawnSync } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, stopAll, tempDir } from '../support/processes.js';

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
  });
});

describe('a headless server (standard input /dev/null, as under systemd)', () => {
  it('writes JSON log records with time and level, warnings on stderr, and never a prompt', async () => {
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
    expect(err).toBe('');
  });
});
