#!/usr/bin/env node
// The main job on one machine: a server and two clients on loopback, started with the shipped
// scripts; the server pushes plugins/libfunctional_2_0.mjs and both clients switch from 5.6 to
// 8.6 without restarting. Runs unattended (no TTY needed) and exits 0 only if that happened.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'nxt-demo-'));
const children = [];

function start(name, script, args, env) {
  const child = spawn(join(root, 'scripts', script), args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const proc = { name, child, output: '', waiters: [] };
  const onData = (d) => {
    const text = d.toString();
    proc.output += text;
    for (const line of text.split('\n')) if (line.trim()) process.stdout.write(`[${name}] ${line}\n`);
    proc.waiters = proc.waiters.filter((w) => !w());
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  child.on('exit', () => { proc.waiters = proc.waiters.filter((w) => !w()); });
  children.push(proc);
  return proc;
}

function waitFor(proc, re, from = 0, ms = 20_000) {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${proc.name}: no ${re} within ${ms} ms`)), ms);
    const check = () => {
      const m = proc.output.slice(from).match(re);
      if (m) { clearTimeout(timer); res(m); return true; }
      if (proc.child.exitCode !== null) { clearTimeout(timer); rej(new Error(`${proc.name} exited`)); return true; }
      return false;
    };
    if (!check()) proc.waiters.push(check);
  });
}

function type(proc, line) {
  process.stdout.write(`[${proc.name}] NxtServer# ${line}   ← typed by the demo\n`);
  proc.child.stdin.write(`${line}\n`);
}

let ok = false;
try {
  // The clients carry the enrollment token the server was started with, so they are approved
  // without an operator typing "approve" (without it they would wait as pending requests).
  const token = 'demo-enroll-token';
  const server = start('server', 'UpdateServer.sh', ['0'], { NXT_STATE_DIR: join(work, 'server'), NXT_ENROLL_TOKEN: token });
  const port = (await waitFor(server, /listening on UDP port (\d+)/))[1];
  const env = (n) => ({ NXT_TRUST: join(work, 'server/release.pub'), NXT_DATA_DIR: join(work, `client-${n}`), NXT_ENROLL_TOKEN: token });
  const clients = [start('client-1', 'UpdateClient.sh', ['127.0.0.1', port], env(1)), start('client-2', 'UpdateClient.sh', ['127.0.0.1', port], env(2))];
  for (const c of clients) await waitFor(c, /registered with the server/);
  for (const c of clients) await waitFor(c, /Major = 5\nMinor = 6/);
  const pids = clients.map((c) => c.child.pid);
  const marks = clients.map((c) => c.output.length);
  type(server, 'push plugins/libfunctional_2_0.mjs');
  await waitFor(server, /push finished: 2 done, 0 failed/);
  for (const [i, c] of clients.entries()) await waitFor(c, /Major = 8\nMinor = 6\nproductName = nxtgen/, marks[i]);
  const alive = clients.every((c, i) => c.child.exitCode === null && c.child.pid === pids[i]);
  if (!alive) throw new Error('a client restarted or died');
  process.stdout.write(`\nOK: both clients now print Major = 8 / Minor = 6, without a restart (pids ${pids.join(', ')} unchanged).\n`);
  ok = true;
} catch (err) {
  process.stdout.write(`\nDEMO FAILED: ${err.message}\n`);
} finally {
  for (const p of children) p.child.kill('SIGTERM');
  await Promise.all(children.map((p) => p.child.exitCode !== null ? undefined : new Promise((r) => p.child.once('exit', r))));
  rmSync(work, { recursive: true, force: true });
  process.exit(ok ? 0 : 1);
}
