/**
 * Several server nodes serving one fleet through one real PostgreSQL (started for this file):
 * two server processes, a device on each; what is typed at one node reaches the devices the other
 * holds, and a node that stops is seen gone.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { copyFileSync, existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Proc, startClient, startServer, tempDir } from '../support/processes.js';
import { writeModule } from '../support/modules.js';
import { havePostgres, startPostgres, type Postgres } from '../support/postgres.js';
import { openPostgres } from '../../src/store/postgres.js';
import { Store } from '../../src/store/store.js';
import { signApproval } from '../../src/security/manifest.js';
import { readReleaseKey } from '../../src/security/release-key.js';

let pg: Postgres | undefined;
beforeAll(async () => { if (havePostgres) pg = await startPostgres(); });
afterAll(() => pg?.stop());

const KEYS = ['release.key', 'release.pub', 'identity.key', 'identity.pub'];

/** Two nodes on one new database, sharing the keys (as deployed nodes do: docs/deploy.md). */
async function twoNodes(dir: string, db: string, extraB: string[] = []): Promise<{ a: Proc; b: Proc; portA: number; portB: number; url: string }> {
  const url = pg!.newDatabase(db);
  const { proc: a, port: portA } = await startServer(join(dir, 'a'), ['--node-name', 'a', '--renew', '1000'], { NXT_DATABASE: url });
  mkdirSync(join(dir, 'b'));
  for (const f of KEYS) copyFileSync(join(dir, 'a', f), join(dir, 'b', f));
  const { proc: b, port: portB } = await startServer(join(dir, 'b'), ['--node-name', 'b', '--renew', '1000', ...extraB], { NXT_DATABASE: url });
  return { a, b, portA, portB, url };
}

const idOf = (p: Proc): string => p.output.match(/nxt client ([0-9a-f]{12})/)![1]!;

/** Ask a node's console again (every 250 ms, for up to 15 s) until its answer passes `ok`: what
 *  the other node did shows here at its next refresh (every 2 s). */
async function eventually(node: Proc, command: string, ok: (answer: string) => boolean): Promise<string> {
  const until = Date.now() + 15_000;
  for (;;) {
    const answer = await node.run(command, /NxtServer# /);
    if (ok(answer)) return answer;
    if (Date.now() > until) throw new Error(`"${command}" never answered as expected; last:\n${answer}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe.skipIf(!havePostgres)('several nodes, one fleet (PostgreSQL)', () => {
  it('a push typed at either node reaches the devices of both; a job queued at one runs once on a device the other holds', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portA, portB } = await twoNodes(dir, 'fleet1');
    const logs = join(dir, 'logs');
    mkdirSync(logs);
    writeFileSync(join(logs, 'app.log'), 'one\ntwo\n');
    const onA = await startClient('on-a', portA, join(dir, 'dev-a'), join(dir, 'a/release.pub'));
    const onB = await startClient('on-b', portB, join(dir, 'dev-b'), join(dir, 'a/release.pub'), '127.0.0.1', ['--maintenance', '--poll', '200', '--logs-dir', logs]);
    const [idA, idB] = [idOf(onA), idOf(onB)];

    // Each node lists the whole fleet, and who holds each device.
    await a.waitFor(/node a \(number \d+\)/);
    const listed = await eventually(a, 'clients', (t) => t.includes(idB));
    expect(listed).toMatch(new RegExp(`${idA}.*online.*\\ba\\s*$`, 'm'));
    expect(listed).toMatch(new RegExp(`${idB}.*online.*\\bb\\s*$`, 'm'));
    expect(await a.run('nodes', /NxtServer# /)).toMatch(/\bb\s+\S+:\d+\s+1\b/);

    const pushed = await a.run(`push ${writeModule(dir, 'm_7_1.mjs', 40_000, 7, 1)}`, /push finished: .*\n/);
    expect(pushed).toMatch(/push finished: 2 done, 0 failed/);
    await onA.waitFor('Major = 7');
    await onB.waitFor('Major = 7');
    // And typed at the other node, for one device the first holds (once that node sees it).
    await eventually(b, 'clients', (t) => t.includes(idA));
    expect(await b.run(`push ${writeModule(dir, 'm_7_2.mjs', 2_000, 7, 2)} --to ${idA}`, /push finished: .*\n/)).toMatch(/push finished: 1 done, 0 failed/);
    await onA.waitFor('Minor = 2');

    const queued = await a.run(`job logs ${idB} --file app.log`, /job (\d+) \(logs\) queued/);
    const job = queued.match(/job (\d+) \(logs\) queued/)![1]!;
    await b.waitFor(new RegExp(`job ${job} \\(logs\\) on \\w+: ok`));
    const jobs = await eventually(a, `jobs ${idB}`, (t) => /done/.test(t));
    expect(jobs).toMatch(new RegExp(`${job} .*done`));
    expect(onB.output.match(new RegExp(`job ${job}\\b`, 'g'))?.length ?? 0).toBeLessThanOrEqual(2);
    expect(b.output.match(new RegExp(`job ${job} \\(logs\\) on \\w+: ok`, 'g'))).toHaveLength(1);
  });

  it('a job that sends a file, typed at one node, reaches a device the other holds: the file goes through the database in parts', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portB, url } = await twoNodes(dir, 'fleet6');
    const dropbox = join(dir, 'dropbox');
    mkdirSync(dropbox);
    const onB = await startClient('on-b', portB, join(dir, 'dev-b'), join(dir, 'a/release.pub'), '127.0.0.1', ['--maintenance', '--poll', '200', '--dropbox-dir', dropbox]);
    const idB = idOf(onB);
    await eventually(a, 'clients', (t) => t.includes(idB));
    // Over two parts of 2 MiB, so that the node holding the device reads it in pieces.
    const bytes = randomBytes(5 * 1024 * 1024 + 123);
    const local = join(dir, 'firmware.bin');
    writeFileSync(local, bytes);
    const queued = await a.run(`job put ${idB} ${local} firmware.bin`, /job (\d+) \(put\) queued|error.*\n/);
    const job = queued.match(/job (\d+) \(put\) queued/)![1]!;
    await b.waitFor(new RegExp(`job ${job} \\(put\\) on \\w+: ok`), 30_000);
    expect(readFileSync(join(dropbox, 'firmware.bin')).equals(bytes)).toBe(true);
    // Node b sent it from its own copy, fetched from the database, not from node a's folder.
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    expect(readFileSync(join(dir, 'b/put', sha256)).equals(bytes)).toBe(true);
    expect(await eventually(a, `jobs ${idB}`, (t) => /done/.test(t))).toMatch(new RegExp(`${job} .*done`));

    // No job needs it any more: once a node's copy is old enough (here: made so, and node a
    // restarted to look it over at once), the copy and the parts in the database go.
    const store = await Store.open(await openPostgres(url));
    try {
      const parts = async (): Promise<number> => Number((await store.engine.query<{ n: number | string }>('SELECT COUNT(*) AS n FROM file_parts WHERE sha256 = ?', [sha256]))[0]!.n);
      expect(await parts()).toBe(3);
      await a.stop();
      const hourAgo = new Date(Date.now() - 3_600_000);
      utimesSync(join(dir, 'a/put', sha256), hourAgo, hourAgo);
      const { proc: again } = await startServer(join(dir, 'a'), ['--node-name', 'a', '--renew', '1000'], { NXT_DATABASE: url });
      await expect.poll(parts, { timeout: 10_000, interval: 100 }).toBe(0);
      expect(existsSync(join(dir, 'a/put', sha256))).toBe(false);
      // Sent again from node a: shared again, and it arrives.
      const queuedAgain = await again.run(`job put ${idB} ${local} firmware2.bin`, /job (\d+) \(put\) queued|error.*\n/);
      const job2 = queuedAgain.match(/job (\d+) \(put\) queued/)![1]!;
      await b.waitFor(new RegExp(`job ${job2} \\(put\\) on \\w+: ok`), 30_000);
      expect(readFileSync(join(dropbox, 'firmware2.bin')).equals(bytes)).toBe(true);
      expect(await parts()).toBe(3);
    } finally {
      await store.close();
    }
  });

  it('a release removed at one node is forgotten by the other: the database\'s rows and both copies are gone', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portA, portB, url } = await twoNodes(dir, 'fleet7');
    const onA = await startClient('on-a', portA, join(dir, 'dev-a'), join(dir, 'a/release.pub'));
    const onB = await startClient('on-b', portB, join(dir, 'dev-b'), join(dir, 'a/release.pub'));
    const idB = idOf(onB);
    await eventually(a, 'clients', (t) => t.includes(idB));
    // Over two parts of 2 MiB: typed at a, for a's device and b's (b fetches it from the database).
    const file = writeModule(dir, 'm_8_1.mjs', 5 * 1024 * 1024, 8, 1);
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
    expect(await a.run(`push ${file}`, /push finished: .*\n/)).toMatch(/push finished: 2 done, 0 failed/);
    const store = await Store.open(await openPostgres(url));
    try {
      const count = async (table: string): Promise<number> => Number((await store.engine.query<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${table} WHERE sha256 = ?`, [sha256]))[0]!.n);
      expect(await count('release_files')).toBe(1);
      expect(await count('file_parts')).toBe(3);
      expect(existsSync(join(dir, 'a/releases', sha256))).toBe(true);
      expect(existsSync(join(dir, 'b/releases', sha256))).toBe(true);

      expect(await a.run(`remove-release ${sha256.slice(0, 12)}`, /removed .*\n|error.*\n/)).toMatch(/removed m_8_1\.mjs 8\.1\.0/);
      for (const table of ['releases', 'release_files', 'file_parts']) expect(await count(table)).toBe(0);
      expect(existsSync(join(dir, 'a/releases', sha256))).toBe(false);
      // Node b hears of it (an event) and deletes its copy.
      await expect.poll(() => existsSync(join(dir, 'b/releases', sha256)), { timeout: 15_000, interval: 100 }).toBe(false);
      expect(await b.run('rollout start 8.1.0', /error.*\n/)).toMatch(/no stored release "8\.1\.0"/);
      // Pushed again, it is shared again (not taken for shared already).
      expect(await a.run(`push ${file} --to ${idB}`, /push finished: .*\n/)).toMatch(/push finished: 0 done, 0 failed, 1 already installed/);
      expect(await count('file_parts')).toBe(3);

      // A release only node a stored (pushed there to a's device) is removed at node b too.
      const only = writeModule(dir, 'm_8_2.mjs', 4096, 8, 2);
      const onlySha = createHash('sha256').update(readFileSync(only)).digest('hex');
      expect(await a.run(`push ${only} --to ${idOf(onA)}`, /push finished: .*\n/)).toMatch(/push finished: 1 done, 0 failed/);
      expect(existsSync(join(dir, 'a/releases', onlySha))).toBe(true);
      expect(await b.run('remove-release 8.2.0', /removed .*\n|error.*\n/)).toMatch(/removed m_8_2\.mjs 8\.2\.0/);
      await expect.poll(() => existsSync(join(dir, 'a/releases', onlySha)), { timeout: 15_000, interval: 100 }).toBe(false);
      expect(await a.run('rollout start 8.2.0', /error.*\n/)).toMatch(/no stored release "8\.2\.0"/);
    } finally {
      await store.close();
    }
  });

  it('a release another node stored after this one started is rolled out here: its record and its bytes come from the database', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portA, portB } = await twoNodes(dir, 'fleet8');
    const onA = await startClient('on-a', portA, join(dir, 'dev-a'), join(dir, 'a/release.pub'));
    const onB = await startClient('on-b', portB, join(dir, 'dev-b'), join(dir, 'a/release.pub'));
    expect(await b.run(`tag ${idOf(onB)} here`, /NxtServer# /)).toMatch(/is in here/);
    // Stored at a only (pushed there to a's own device), long after b started.
    const file = writeModule(dir, 'later_8_1.mjs', 3 * 1024 * 1024, 8, 1);
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
    expect(await a.run(`push ${file} --to ${idOf(onA)}`, /push finished: .*\n/)).toMatch(/push finished: 1 done, 0 failed/);
    expect(existsSync(join(dir, 'b/releases', sha256))).toBe(false);
    const started = await b.run('rollout start later_8_1.mjs --to here --stages 100%', /rollout \d+: .*\n|error.*\n/);
    expect(started).toMatch(/rollout \d+: later_8_1\.mjs 8\.1\.0 to 1 device\(s\)/);
    await onB.waitFor(/Major = 8\nMinor = 1/, 30_000);
    // Node b fetched the bytes from the database, checked against the release key's approval.
    expect(createHash('sha256').update(readFileSync(join(dir, 'b/releases', sha256, 'later_8_1.mjs'))).digest('hex')).toBe(sha256);
  });

  it('--auto-update at one node brings its devices up to a release another node stored a moment ago, nobody typing anything there', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portA, portB } = await twoNodes(dir, 'fleet9', ['--auto-update']);
    const onA = await startClient('on-a', portA, join(dir, 'dev-a'), join(dir, 'a/release.pub'));
    const onB = await startClient('on-b', portB, join(dir, 'dev-b'), join(dir, 'a/release.pub'));
    const file = writeModule(dir, 'fresh_8_2.mjs', 1024 * 1024, 8, 2);
    expect(await a.run(`push ${file} --to ${idOf(onA)}`, /push finished: .*\n/)).toMatch(/push finished: 1 done, 0 failed/);
    // Node b reads the release's record at its next look at the database (every 2 s); its device,
    // renewing every second, is then behind it and gets it.
    await onB.waitFor(/Major = 8\nMinor = 2/, 30_000);
    expect(b.output).toMatch(new RegExp(`client ${idOf(onB)} runs 1\\.0\\.0: updating it to fresh_8_2\\.mjs 8\\.2\\.0.*\\(--auto-update\\)`));
  });

  it('a device waiting for approval at one node is listed at the other, and approved and tagged there', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portB } = await twoNodes(dir, 'fleet5');
    const waiting = await startClient('waits-at-b', portB, join(dir, 'dev'), join(dir, 'a/release.pub'), '127.0.0.1', [], { env: { NXT_ENROLL_TOKEN: '' }, until: /waiting for the operator/ });
    const id = idOf(waiting);
    await eventually(a, 'requests', (t) => t.includes(id) && /pending/.test(t));
    expect(await a.run(`approve ${id}`, /NxtServer# /)).toMatch(/approved/);
    await waiting.waitFor('registered with the server', 15_000);
    expect(await eventually(a, 'clients', (t) => t.includes(id))).toMatch(new RegExp(`${id}.*online.*\\bb\\b`));

    // Tagged at A, done by B (which holds it and saves it); untagged the same way.
    expect(await a.run(`tag ${id} lab`, /NxtServer# /)).toMatch(new RegExp(`${id} is in lab`));
    expect(await b.run('clients', /NxtServer# /)).toMatch(new RegExp(`${id}.*\\blab\\b`));
    expect(await a.run(`tag ${id} lab`, /NxtServer# /)).toMatch(/was already in lab/);
    expect(await a.run(`untag ${id} lab`, /NxtServer# /)).toMatch(new RegExp(`${id} left lab`));
    expect(await b.run('clients', /NxtServer# /)).not.toMatch(new RegExp(`${id}.*\\blab\\b`));
  });

  it('a node killed with SIGKILL is seen gone, and a push to its devices fails with that reason instead of hanging', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portB } = await twoNodes(dir, 'fleet2');
    const onB = await startClient('on-b', portB, join(dir, 'dev-b'), join(dir, 'a/release.pub'));
    const idB = idOf(onB);
    await eventually(a, 'clients', (t) => t.includes(idB));
    await b.stop('SIGKILL');
    const started = Date.now();
    const out = await a.run(`push ${writeModule(dir, 'm_8_0.mjs', 2000, 8, 0)} --to ${idB}`, /push finished: .*\n|error.*\n/);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(out).toMatch(/node b stopped answering|none of the|no online client|neither a group/);
    await eventually(a, 'nodes', (t) => !/^b\s/m.test(t));
    // Its device is still part of the fleet: listed offline (with the node it was last at), not
    // forgotten, and not pushed to.
    expect(await a.run('clients', /NxtServer# /)).toMatch(new RegExp(`${idB}.*offline.*\\bb\\b`));
  });
});

describe.skipIf(!havePostgres)('the database is not a way to have a node sign code', () => {
  it('a push row for bytes the release key did not approve is refused by the node that would carry it out', async () => {
    const dir = tempDir('nxt-nodes-');
    const url = pg!.newDatabase('forged');
    const { proc: a } = await startServer(join(dir, 'a'), ['--node-name', 'a'], { NXT_DATABASE: url });
    mkdirSync(join(dir, 'b'));
    for (const f of KEYS) copyFileSync(join(dir, 'a', f), join(dir, 'b', f));
    const { proc: b, port: portB } = await startServer(join(dir, 'b'), ['--node-name', 'b'], { NXT_DATABASE: url });
    const device = await startClient('on-b', portB, join(dir, 'dev'), join(dir, 'a/release.pub'));
    const id = device.output.match(/nxt client ([0-9a-f]{32})/)![1]!;
    // Someone with write access to the database (not the release key) asks node b to push code.
    const store = await Store.open(await openPostgres(url));
    const bytes = Buffer.from('export default () => ({ major: 66, minor: 6, productName: "evil" });\n');
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await store.putReleaseFile({ sha256, name: 'evil_66_6.mjs', parts: 1, doc: { name: 'evil_66_6.mjs', version: { major: 66, minor: 6, patch: 0 }, sha256, size: bytes.length } });
    await store.putFilePart(sha256, 0, bytes);
    await store.addRemotePushes('forged', [{ node: 'b', device: id, sha256 }], new Date().toISOString(), 'nxt_work');
    for (const until = Date.now() + 15_000; ;) {
      const [row] = await store.remotePushes('forged');
      if (row?.state === 'done') {
        expect(row.report).toMatch(/does not carry the release key's approval/);
        break;
      }
      expect(Date.now()).toBeLessThan(until);
      await new Promise((r) => setTimeout(r, 200));
    }
    await store.close();
    expect(device.output).not.toMatch(/evil|Major = 66/);
    expect(a.alive && b.alive).toBe(true);
  });
});

describe.skipIf(!havePostgres)('a release written whole, before its bytes went in parts (schema version 5)', () => {
  it('is still pushed by the node that holds the device, and refused if its bytes are not the ones approved', async () => {
    const dir = tempDir('nxt-nodes-');
    const url = pg!.newDatabase('whole');
    await startServer(join(dir, 'a'), ['--node-name', 'a'], { NXT_DATABASE: url });
    mkdirSync(join(dir, 'b'));
    for (const f of KEYS) copyFileSync(join(dir, 'a', f), join(dir, 'b', f));
    const { port: portB } = await startServer(join(dir, 'b'), ['--node-name', 'b'], { NXT_DATABASE: url });
    const device = await startClient('on-b', portB, join(dir, 'dev'), join(dir, 'a/release.pub'));
    const id = device.output.match(/nxt client ([0-9a-f]{32})/)![1]!;
    const store = await Store.open(await openPostgres(url));
    const signer = readReleaseKey(join(dir, 'a/release.key'));
    /** A row as a node of schema version 5 wrote it: the bytes in it, approved by the release key. */
    const whole = async (name: string, approved: Buffer, stored: Buffer): Promise<string> => {
      const sha256 = createHash('sha256').update(approved).digest('hex');
      const release = { name, version: { major: 67, minor: Number(name.split('_')[2]!.split('.')[0]), patch: 0 }, size: approved.length, sha256 };
      const approval = Buffer.from(signApproval(release, signer)).toString('base64');
      await store.engine.batch([{ sql: 'INSERT INTO release_files (sha256, name, doc, bytes, presigned, approval) VALUES (?, ?, ?, ?, NULL, ?)', params: [sha256, name, JSON.stringify(release), stored, approval] }]);
      await store.addRemotePushes(name, [{ node: 'b', device: id, sha256 }], new Date().toISOString(), 'nxt_work');
      for (const until = Date.now() + 20_000; ;) {
        const [row] = await store.remotePushes(name);
        if (row?.state === 'done') return row.report!;
        expect(Date.now()).toBeLessThan(until);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const module = (minor: number): Buffer => Buffer.from(`export default () => ({ major: 67, minor: ${minor}, productName: "whole" });\n`);
    expect(JSON.parse(await whole('whole_67_1.mjs', module(1), module(1)))).toMatchObject({ ok: true });
    await device.waitFor('Major = 67');
    // The same kind of row with other bytes than the approved ones: refused, nothing sent.
    expect(await whole('whole_67_2.mjs', module(2), module(3))).toMatch(/does not match its approval/);
    expect(device.output).not.toMatch(/Minor = [23]/);
    await store.close();
  });
});

describe.skipIf(!havePostgres)('rollout campaigns with several nodes', () => {
  it('a campaign started at one node runs on the devices the other holds; killed mid-campaign, the other node takes it over and finishes it', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portB } = await twoNodes(dir, 'fleet4');
    const probation = ['--probation', '3'];
    const devices = await Promise.all([1, 2].map((i) => startClient(`dev${i}`, portB, join(dir, `dev${i}`), join(dir, 'a/release.pub'), '127.0.0.1', probation)));
    const ids = devices.map(idOf);
    await eventually(a, 'clients', (t) => ids.every((id) => t.includes(id)));
    const started = await a.run(`rollout start ${writeModule(dir, 'staged_7_1.mjs', 2000, 7, 1)} --stages 1,100%`, /rollout \d+: .*\n|error.*\n/);
    expect(started).toMatch(/rollout (\d+): staged_7_1\.mjs 7\.1\.0 to 2 device\(s\)/);
    const id = started.match(/rollout (\d+)/)![1]!;
    // Stage 1's device got it (through node b) and is on probation: the node running the campaign dies.
    await Promise.race(devices.map((d) => d.waitFor(/Major = 7/)));
    await a.stop('SIGKILL');
    await b.waitFor(/node a is gone: its 1 rollout campaign\(s\) run here now/, 30_000);
    await b.waitFor(new RegExp(`rollout ${id} .* done: 2 committed, 0 already had it, 0 failed`), 30_000);
    for (const d of devices) await d.waitFor(/committed/);
  });
});

const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
const streamModule = ['/usr/lib/nginx/modules/ngx_stream_module.so'].find((p) => existsSync(p));
if (process.env.CI && (!nginx || !streamModule)) throw new Error('nginx with its stream module is not installed (apt-get install nginx libnginx-mod-stream): .ci/run should have installed it');

/** nginx balancing UDP over the nodes as docs/deploy.md shows (here by address and port: every
 *  test device has the address 127.0.0.1). Stopped when the test file ends. */
async function balancer(dir: string, ports: number[]): Promise<number> {
  const port = await freeUdpPort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, [
    `load_module ${streamModule};`, 'daemon off;', 'master_process off;', `pid ${join(dir, 'nginx.pid')};`, `error_log ${join(dir, 'nginx-error.log')} info;`,
    'events { worker_connections 1024; }',
    'stream {',
    `  upstream nxt { hash $remote_addr$remote_port consistent; ${ports.map((p) => `server 127.0.0.1:${p} max_fails=1 fail_timeout=30s;`).join(' ')} }`,
    `  server { listen 127.0.0.1:${port} udp; proxy_pass nxt; proxy_timeout 60s; }`,
    '}',
  ].join('\n'));
  const proc = new Proc('nginx', nginx!, ['-c', conf, '-p', dir, '-e', join(dir, 'nginx-error.log')], {});
  // nginx writes its pid file once its sockets are open.
  for (const until = Date.now() + 10_000; !existsSync(join(dir, 'nginx.pid')); await new Promise((r) => setTimeout(r, 50))) {
    if (!proc.alive || Date.now() > until) throw new Error(`nginx did not start: ${proc.output}`);
  }
  return port;
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe.skipIf(!havePostgres || !nginx || !streamModule)('several nodes behind nginx\'s UDP balancer', () => {
  it('when a node is killed, its devices reach the other node through the balancer and register there within seconds', async () => {
    const dir = tempDir('nxt-nodes-');
    const { a, b, portA, portB } = await twoNodes(dir, 'fleet3');
    const port = await balancer(dir, [portA, portB]);
    const devices = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => startClient(`dev${i}`, port, join(dir, `dev${i}`), join(dir, 'a/release.pub'))));
    const ids = devices.map(idOf);
    const listed = await eventually(a, 'clients', (t) => ids.every((id) => t.includes(id)));
    const onB = ids.filter((id) => new RegExp(`${id}.*\\bb\\s*$`, 'm').test(listed));
    const [victim, survivor, victimName] = onB.length > 0 ? [b, a, 'b'] : [a, b, 'a'];
    const moving = onB.length > 0 ? onB : ids;
    await victim.stop('SIGKILL');
    const killedAt = Date.now();
    // Every device the dead node held registers at the survivor.
    await eventually(survivor, 'clients', (t) => moving.every((id) => new RegExp(`${id}.*online.*\\b${victimName === 'b' ? 'a' : 'b'}\\s*$`, 'm').test(t)));
    const movedIn = Date.now() - killedAt;
    expect(movedIn).toBeLessThan(15_000);
    expect(await survivor.run(`push ${writeModule(dir, 'm_9_0.mjs', 2000, 9, 0)}`, /push finished: .*\n/)).toMatch(/push finished: 6 done, 0 failed/);
  });
});
