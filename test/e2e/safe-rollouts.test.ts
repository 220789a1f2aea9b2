/**
 * Safe rollouts, device side, with real processes: validly signed modules with the defects an
 * operator's bug can have. Each case ends with the client alive, answering its console, on its
 * previous version, and the server told why; a restart during or after probation does not bring
 * a bad module back.
 */
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Proc, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';

// A trial of 3 s: short, for the modules that never finish loading, yet long enough for one that
// fills its 64 MiB heap to run out of it on a loaded 2-core VM (a fresh page costs ~13 µs there;
// at 1.5 s the load deadline once came first and called it hung).
const CLIENT_ARGS = ['--probation', '2', '--trial-timeout', '3000', '--module-memory', '64'];
const VERSION = 'export default () => ({ major: 7, minor: 1, productName: "bad" });';

let dir: string;
let server: Proc;
let port: number;
let client: Proc;

beforeEach(async () => {
  minor = 0;
  dir = tempDir('nxt-safe-');
  ({ proc: server, port } = await startServer(join(dir, 'server')));
  client = await startDevice();
});

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

function startDevice(): Promise<Proc> {
  return startClient('device', port, join(dir, 'device'), join(dir, 'server/release.pub'), '127.0.0.1', CLIENT_ARGS);
}

let minor = 0;
/** Push a module with this source; resolves with the server's line for the device. */
async function push(source: string): Promise<string> {
  const file = join(dir, `m_7_${++minor}.mjs`);
  writeFileSync(file, source);
  const out = await server.run(`push ${file}`, /push finished: .*\n|\nerror.*\n/, 30_000);
  return out.split('\n').find((l) => / done: | failed \(/.test(l)) ?? out;
}

/** The device answers its console and runs `version` (major.minor). */
async function runs(version: string): Promise<void> {
  const [major, minorPart] = version.split('.');
  const out = await client.run('show version', /productName = .*\n/);
  expect(out).toMatch(new RegExp(`Major = ${major}\\nMinor = ${minorPart}\\n`));
  expect(client.alive).toBe(true);
}

describe('a module is tried in a thread of its own before it is activated', () => {
  it.each([
    ['throws at top level', `throw new Error("boom"); ${VERSION}`, 'loadFailed'],
    ['exports no version function', 'export const x = 1;', 'badShape'],
    ['loops forever at top level', `while (true) {} ${VERSION}`, 'hung'],
    ['awaits forever at top level', `await new Promise(() => {}); ${VERSION}`, 'hung'],
    ['allocates until its heap is full', `const a = []; while (true) a.push(new Array(1e5).fill(Math.random())); ${VERSION}`, 'outOfMemory'],
    ['allocates Buffers until the process would run out', `const a = []; while (true) a.push(Buffer.alloc(32 * 1024 * 1024, 1)); ${VERSION}`, 'outOfMemory'],
    ['calls process.exit()', `process.exit(0); ${VERSION}`, 'exited'],
    ['signals the agent\'s process', `process.kill(process.pid, "SIGTERM"); ${VERSION}`, 'loadFailed'],
    ['rejects a promise nobody handles', `Promise.reject(new Error("nobody")); ${VERSION}`, 'crashed'],
    ['fails its selfTest()', `${VERSION} export async function selfTest() { throw new Error("sensor not found"); }`, 'selfTestFailed'],
  ])('a module that %s is refused (%s) and the device stays on 5.6', async (_, source, code) => {
    expect(await push(source)).toMatch(new RegExp(`failed \\(${code}\\)`));
    await runs('5.6');
    expect(client.output).toMatch(new RegExp(`update refused: m_7_\\d+\\.mjs: ${code}`));
  });
});

describe('probation: an activated module commits only after it ran without a fault', () => {
  it('a module that throws from a timer 1 s after loading is rolled back without a restart, stays rolled back after one, and is not tried again', async () => {
    const bad = `setTimeout(() => { throw new Error("late"); }, 1000); ${VERSION}`;
    expect(await push(bad)).toMatch(/done: 7\.1 bad active, on probation for 2 s/);
    await server.waitFor(/client \w+ rolled back m_7_1\.mjs 7\.1\.0 \(crashed: an uncaught error in it: late\); it runs 1\.0\.0 again/);
    await runs('5.6');
    // A restart does not bring it back: no crash loop.
    await client.stop();
    client = await startDevice();
    await runs('5.6');
    // The same module again is refused at its offer.
    const file = join(dir, 'm_7_1.mjs');
    const again = await server.run(`push ${file}`, /push finished: .*\n/);
    expect(again).toMatch(/failed \(rolledBack\)/);
    expect(await server.run('history', /rolled back \(crashed\).*\n/)).toMatch(/m_7_1\.mjs/);
  });

  it('a module that hangs its thread 0.5 s after loading is rolled back (hung)', async () => {
    expect(await push(`setTimeout(() => { while (true) {} }, 500); ${VERSION}`)).toMatch(/done: /);
    await server.waitFor(/rolled back m_7_\d+\.mjs 7\.\d+\.0 \(hung: /);
    await runs('5.6');
  });

  it('a device that gets no CPU for longer than the hang limit keeps a good module (starved, not hung)', async () => {
    const good = `${VERSION.replace('"bad"', '"good"')} export function healthCheck() { return true; }`;
    expect(await push(good)).toMatch(/done: 7\.1 good active, on probation for 2 s/);
    // The whole agent stopped for 1.6 s (a loaded host, a paused VM): past the 1 s hang limit.
    process.kill(client.pid, 'SIGSTOP');
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    process.kill(client.pid, 'SIGCONT');
    await server.waitFor(/client \w+ committed m_7_1\.mjs 7\.1\.0|rolled back m_7_1\.mjs.*\n/);
    expect(server.output).not.toMatch(/rolled back m_7_1/);
    await runs('7.1');
  });

  it('a module whose healthCheck() fails after 2 s is rolled back (unhealthy)', async () => {
    await client.stop();
    client = await startClient('device', port, join(dir, 'device'), join(dir, 'server/release.pub'), '127.0.0.1', ['--probation', '5']);
    const source = `const t0 = Date.now(); ${VERSION} export function healthCheck() { if (Date.now() - t0 > 2000) throw new Error("queue stuck"); return true; }`;
    expect(await push(source)).toMatch(/done: /);
    await server.waitFor(/rolled back m_7_\d+\.mjs 7\.\d+\.0 \(unhealthy: its healthCheck\(\) failed: queue stuck\)/);
    await runs('5.6');
  });

  it('a healthy module commits after its probation; the next bad one rolls back to it, not further', async () => {
    const good = `${VERSION.replace('"bad"', '"good"')} export function selfTest() { return true; } export function healthCheck() { return true; }`;
    expect(await push(good)).toMatch(/done: 7\.1 good active, on probation/);
    await server.waitFor(/client \w+ committed m_7_1\.mjs 7\.1\.0/);
    await runs('7.1');
    const bad = `setTimeout(() => { throw new Error("late"); }, 300); export default () => ({ major: 7, minor: 2, productName: "bad" });`;
    expect(await push(bad)).toMatch(/done: 7\.2 bad active/);
    await server.waitFor(/rolled back m_7_2\.mjs 7\.2\.0 .* it runs 7\.1\.0 again/);
    await runs('7.1');
  });

  it('keeps only the module files it needs: an activation, a commit, a rollback and a start each take the rest away (and the server four sealed releases)', async () => {
    const modules = join(dir, 'device', 'modules');
    const files = (): string[] => readdirSync(modules).sort();
    const good = (n: number): string => `export default () => ({ major: 7, minor: ${n}, productName: "good" }); export function healthCheck() { return true; }`;
    // A probation long enough for a second push to come within it on a busy machine.
    await client.stop();
    client = await startClient('device', port, join(dir, 'device'), join(dir, 'server/release.pub'), '127.0.0.1', ['--probation', '4', ...CLIENT_ARGS.slice(2)]);
    expect(await push(good(1))).toMatch(/done: 7\.1 good active/);
    await server.waitFor(/client \w+ committed m_7_1\.mjs 7\.1\.0/);
    const [first] = files();
    expect(files()).toHaveLength(1);
    // On trial, 7.2 keeps 7.1 (its way back); a 7.3 pushed before 7.2 commits replaces the trial,
    // whose file goes at once: the way back is still 7.1.
    expect(await push(good(2))).toMatch(/done: 7\.2 good active/);
    const second = files().find((f) => f !== first);
    expect(files()).toHaveLength(2);
    expect(await push(good(3))).toMatch(/done: 7\.3 good active/);
    expect(files()).toHaveLength(2);
    expect(files()).toContain(first);
    expect(files()).not.toContain(second);
    await server.waitFor(/client \w+ committed m_7_3\.mjs 7\.3\.0/);
    const kept = files();
    expect(kept).toHaveLength(1);
    expect(kept).not.toContain(first);
    const bad = `setTimeout(() => { throw new Error("late"); }, 300); export default () => ({ major: 7, minor: 4, productName: "bad" });`;
    expect(await push(bad)).toMatch(/done: 7\.4 bad active/);
    await server.waitFor(/rolled back m_7_4\.mjs 7\.4\.0 .* it runs 7\.3\.0 again/);
    // The module rolled back went with the rollback.
    expect(files()).toEqual(kept);
    // One left by an agent that kept every module (an older release): gone at a start.
    writeFileSync(join(modules, `${'ab'.repeat(32)}.mjs`), 'export default () => ({ major: 1, minor: 0 });\n');
    await client.stop();
    client = await startDevice();
    await client.waitFor(/removed 1 module file\(s\) nothing needs any more/);
    expect(files()).toEqual(kept);
    await runs('7.3');
    // The server keeps the four releases sealed most recently; the fifth push's seal took the
    // place of the first's once no push used it.
    expect(await push(good(5))).toMatch(/done: 7\.5 good active/);
    expect(readdirSync(join(dir, 'server', 'sealed'))).toHaveLength(4);
  });

  it('killed (-9) during probation, the device comes back on the previous module and tells the server', async () => {
    const slowToFail = `${VERSION} export function healthCheck() { return true; }`;
    await client.stop();
    client = await startClient('device', port, join(dir, 'device'), join(dir, 'server/release.pub'), '127.0.0.1', ['--probation', '60']);
    expect(await push(slowToFail)).toMatch(/done: 7\.1 bad active, on probation for 60 s/);
    await runs('7.1');
    await client.stop('SIGKILL');
    client = await startDevice();
    expect(client.output).toMatch(/m_7_1\.mjs 7\.1\.0 was on probation when the agent stopped: it is rolled back/);
    await runs('5.6');
    await server.waitFor(/rolled back m_7_1\.mjs 7\.1\.0 \(interrupted: /);
  });

  it('a module that takes the whole agent down during its trial is not tried again after the restart', async () => {
    // As a module that fills the device's memory gets the agent killed by the kernel: from its
    // thread it has the agent's process killed (process.kill of the agent is refused there).
    const killer = `import { execFileSync } from 'node:child_process';
      export function selfTest() { execFileSync(process.execPath, ['-e', 'process.kill(' + process.pid + ', "SIGKILL")']); return true; }
      ${VERSION}`;
    const file = join(dir, `m_7_${++minor}.mjs`);
    writeFileSync(file, killer);
    const at = server.type(`push ${file}`);
    expect(await client.exited).not.toBe(0);
    client = await startDevice();
    expect(client.output).toMatch(/m_7_1\.mjs 7\.1\.0 was being tried when the agent stopped \(it may have taken the agent down\): it is not tried again/);
    await runs('5.6');
    await server.waitFor(/rolled back m_7_1\.mjs 7\.1\.0 \(interrupted: m_7_1\.mjs 7\.1\.0 was being tried/);
    await server.waitFor(/push finished: 0 done, 1 failed/, 30_000, at);
    // Pushed again (a rollout, an operator who did not look): refused, the agent stays up.
    expect(await push(killer)).toMatch(/failed \(rolledBack\): .*was rolled back on this device before/);
    await runs('5.6');
  });
});

describe('after commit: a module that fails later is started again, the version unchanged', () => {
  /** A module that, once `trigger` exists and `done` does not, creates `done` and then `fault`s
   *  (JavaScript run in its thread's interval); it says when it started, and when it is back. */
  function lateFaultModule(fault: string): { source: string; trigger: string; done: string } {
    const trigger = join(dir, 'trigger');
    const done = join(dir, 'done');
    const source = `import { existsSync, writeFileSync } from 'node:fs';
      console.log('late module started');
      setInterval(() => {
        if (!existsSync(${JSON.stringify(trigger)}) || existsSync(${JSON.stringify(done)})) return;
        writeFileSync(${JSON.stringify(done)}, '');
        ${fault}
        console.log('late module back');
      }, 50);
      export default () => ({ major: 7, minor: 1, productName: 'late' });`;
    return { source, trigger, done };
  }

  it('in the agent that committed it, and in one started with it committed', async () => {
    const { source, trigger, done } = lateFaultModule('throw new Error("late fault");');
    expect(await push(source)).toMatch(/done: 7\.1 late active/);
    await server.waitFor(/client \w+ committed m_7_1\.mjs 7\.1\.0/);
    let from = client.output.length;
    writeFileSync(trigger, '');
    await client.waitFor(/m_7_1\.mjs failed \(.*late fault.*\); starting it again in 1 s/, 15_000, from);
    await client.waitFor(/late module started/, 15_000, client.output.indexOf('starting it again', from));
    await runs('7.1');
    // Started with the module committed: watched all the same.
    await client.stop();
    client = await startDevice();
    await client.waitFor(/late module started/);
    from = client.output.length;
    rmSync(done);
    await client.waitFor(/m_7_1\.mjs failed \(.*late fault.*\); starting it again in 1 s/, 15_000, from);
    await client.waitFor(/late module started/, 15_000, client.output.indexOf('starting it again', from));
    await runs('7.1');
  });

  it('is held to the default hang limit, not its probation\'s shorter one: 1.5 s of synchronous work is no hang', async () => {
    // CLIENT_ARGS' 2 s probation: a hang limit of 1 s while on probation.
    const { source, trigger } = lateFaultModule('const until = Date.now() + 1500; while (Date.now() < until);');
    expect(await push(source)).toMatch(/done: 7\.1 late active/);
    await server.waitFor(/client \w+ committed m_7_1\.mjs 7\.1\.0/);
    const from = client.output.length;
    writeFileSync(trigger, '');
    await client.waitFor(/late module back/, 15_000, from);
    expect(client.output.slice(from)).not.toMatch(/failed \(/);
    await runs('7.1');
  });
});

describe('a trial longer than the server\'s patience', () => {
  it('the device says it holds every chunk while it verifies and loads, and the push is reported done', async () => {
    // A server that gives up on a silent device after 1.5 s; a module whose selfTest() takes 4 s
    // (within the device's 30 s trial). Silent while it loads, the device would be reported
    // failed ("received every chunk but never reported a result") and then succeed.
    await stopAll();
    ({ proc: server, port } = await startServer(join(dir, 'patient'), ['--peer-timeout', '1500']));
    client = await startClient('device', port, join(dir, 'device-2'), join(dir, 'patient/release.pub'), '127.0.0.1', ['--probation', '1']);
    const slow = `${VERSION.replace('"bad"', '"slow"')} export async function selfTest() { await new Promise((r) => setTimeout(r, 4000)); return true; }`;
    const started = Date.now();
    expect(await push(slow)).toMatch(/done: 7\.1 slow active/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4000);
    await runs('7.1');
  });
});
