/**
 * The maintenance issue's checks with real processes: log, backup, put and clean jobs, names
 * that try to leave the device's roots, and a job queued for an offline device.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Roots } from '../../src/jobs/roots.js';
import { Proc, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { runJobAt as job } from '../support/jobs.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

/** A server and one device with its roots under `dir`; the device polls fast in maintenance mode. */
async function setup(maintenance = true): Promise<{ dir: string; server: Proc; port: number; device: Proc; id: string; roots: Roots }> {
  const dir = tempDir();
  const { proc: server, port } = await startServer(join(dir, 'server'));
  const roots: Roots = { logs: join(dir, 'dev/logs'), config: join(dir, 'dev/config'), dropbox: join(dir, 'dev/dropbox') };
  for (const r of Object.values(roots)) mkdirSync(r, { recursive: true });
  const device = await startDevice(dir, port, roots, maintenance);
  return { dir, server, port, device, id: device.output.match(/nxt client ([0-9a-f]{12})/)![1]!, roots };
}

function startDevice(dir: string, port: number, roots: Roots, maintenance: boolean, name = 'device'): Promise<Proc> {
  return startClient(name, port, join(dir, 'dev/data'), join(dir, 'server/release.pub'), '127.0.0.1', [
    '--logs-dir', roots.logs, '--config-dir', roots.config, '--dropbox-dir', roots.dropbox, '--poll', '200', ...(maintenance ? ['--maintenance'] : []),
  ]);
}

describe('maintenance jobs', () => {
  it('logs with a time and severity filter upload exactly the matching lines; backup uploads the config byte for byte', async () => {
    const { server, id, roots, dir } = await setup();
    writeFileSync(join(roots.logs, 'app.log'), [
      '2026-11-23T09:59:59Z ERROR before the window',
      '2026-11-23T10:00:00Z ERROR disk full',
      '2026-11-23T10:15:00Z INFO rotated',
      '2026-11-23T10:30:00Z CRIT fan stopped',
      '2026-11-23T11:00:00Z ERROR after the window',
    ].join('\n'));
    const logs = await job(server, `logs ${id} --since 2026-11-23T10:00:00Z --until 2026-11-23T11:00:00Z --severity error --file app.log`);
    expect(logs).toMatch(/: ok — uploaded logs-job-\d+\.txt: 2 of 5 lines/);
    const uploaded = logs.match(/→ (\S+)/)![1]!;
    expect(readFileSync(uploaded, 'utf8')).toBe('2026-11-23T10:00:00Z ERROR disk full\n2026-11-23T10:30:00Z CRIT fan stopped\n');
    expect(uploaded.startsWith(join(dir, 'server/uploads/'))).toBe(true);

    const config = randomBytes(100_000); // binary, and more than one chunk
    writeFileSync(join(roots.config, 'device.conf'), config);
    const backup = await job(server, `backup ${id} device.conf`);
    expect(backup).toMatch(/: ok — uploaded device\.conf/);
    expect(readFileSync(backup.match(/→ (\S+)/)![1]!).equals(config)).toBe(true);
  });

  it('put lands a file in the drop-box; clean removes only old files', async () => {
    const { server, id, roots, dir } = await setup();
    const local = join(dir, 'firmware.bin');
    const bytes = randomBytes(50_000);
    writeFileSync(local, bytes);
    expect(await job(server, `put ${id} ${local} incoming.bin`)).toMatch(/: ok — wrote 50000 bytes/);
    expect(readFileSync(join(roots.dropbox, 'incoming.bin')).equals(bytes)).toBe(true);

    const now = Date.now();
    for (const [name, days] of [['old.log', 30], ['older.log', 60], ['fresh.log', 1]] as const) {
      writeFileSync(join(roots.logs, name), name);
      utimesSync(join(roots.logs, name), new Date(now - days * 86_400_000), new Date(now - days * 86_400_000));
    }
    expect(await job(server, `clean ${id} logs --older-than 7d`)).toMatch(/: ok — removed 2 of 3 files from logs/);
    expect(readdirSync(roots.logs)).toEqual(['fresh.log']);
    // The README's examples on a fresh device: folders that do not exist yet.
    expect(await job(server, `clean ${id} logs/archive --older-than 7d`)).toMatch(/: ok — nothing to clean: logs\/archive does not exist/);
    expect(await job(server, `put ${id} ${local} ca/new/firmware.bin`)).toMatch(/: file does not exist — the directory of ca\/new\/firmware\.bin does not exist \(job put … --mkdir makes it\)/);
    expect(await job(server, `put ${id} ${local} ca/new/firmware.bin --mkdir`)).toMatch(/: ok — wrote 50000 bytes/);
    expect(readFileSync(join(roots.dropbox, 'ca/new/firmware.bin')).equals(bytes)).toBe(true);
  });

  it('the server\'s copy of a file sent by a job goes once no job still to run needs it, and not before', async () => {
    const { server, port, id, roots, dir, device } = await setup();
    const sent = randomBytes(30_000);
    const waiting = randomBytes(20_000);
    writeFileSync(join(dir, 'sent.bin'), sent);
    writeFileSync(join(dir, 'waiting.bin'), waiting);
    const copy = (bytes: Buffer): string => join(dir, 'server/put', createHash('sha256').update(bytes).digest('hex'));
    expect(await job(server, `put ${id} ${join(dir, 'sent.bin')} sent.bin`)).toMatch(/: ok — wrote 30000 bytes/);
    // The second waits: the device is off when it is queued.
    await device.stop();
    await server.run(`job put ${id} ${join(dir, 'waiting.bin')} waiting.bin`, /queued/);
    expect(existsSync(copy(sent)) && existsSync(copy(waiting))).toBe(true);
    // Both copies untouched for an hour, as if the server had run that long; the server
    // restarts and looks them over.
    await server.stop();
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const f of [copy(sent), copy(waiting)]) utimesSync(f, hourAgo, hourAgo);
    const { proc: again } = await startServer(join(dir, 'server'), ['--port', String(port)]);
    expect(existsSync(copy(sent))).toBe(false);
    expect(existsSync(copy(waiting))).toBe(true);
    // The job still to run gets its file; the one sent may be sent again: it is copied again.
    await startDevice(dir, port, roots, true, 'device back');
    await again.waitFor(/job 2 \(put\) on \w+: ok/);
    expect(readFileSync(join(roots.dropbox, 'waiting.bin')).equals(waiting)).toBe(true);
    expect(await job(again, `put ${id} ${join(dir, 'sent.bin')} again.bin`)).toMatch(/: ok — wrote 30000 bytes/);
    expect(readFileSync(join(roots.dropbox, 'again.bin')).equals(sent)).toBe(true);
  });

  it('what devices uploaded goes --keep-uploads days after it arrived, finished jobs\' records --keep-jobs days after, and what is newer stays', async () => {
    const { server, port, id, roots, dir } = await setup();
    writeFileSync(join(roots.logs, 'app.log'), '2026-11-23T10:00:00Z ERROR disk full\n');
    writeFileSync(join(roots.config, 'device.conf'), 'mode=kiosk\n');
    const logs = (await job(server, `logs ${id} --file app.log`)).match(/→ (\S+)/)![1]!;
    const backup = (await job(server, `backup ${id} device.conf`)).match(/→ (\S+)/)![1]!;
    // Listings show the newest N and say what they leave out.
    const listed = await server.run('results --last 1', /backup +done.*\n/);
    expect(listed).toMatch(/1 older results not shown \(--last N shows more\)/);
    expect(listed).not.toMatch(/logs +done/);
    expect(await server.run('jobs --last 0', /--last takes/)).toMatch(/--last takes a positive whole number/);
    // The server stops; the log extract arrived 31 days ago, the backup 29 days ago.
    await server.stop();
    const daysAgo = (n: number): Date => new Date(Date.now() - n * 86_400_000);
    utimesSync(join(logs, '..'), daysAgo(31), daysAgo(31));
    utimesSync(join(backup, '..'), daysAgo(29), daysAgo(29));
    // Job records are kept for 0.000001 days (86 ms): both jobs ended before the server stopped.
    const { proc: again } = await startServer(join(dir, 'server'), ['--port', String(port), '--keep-uploads', '30', '--keep-jobs', '0.000001']);
    await again.waitFor(/deleted what devices uploaded for 1 job\(s\) over 30 days ago \(--keep-uploads\)/);
    await again.waitFor(/forgot 2 job\(s\) finished over 0 days ago \(--keep-jobs\)/);
    expect(existsSync(join(logs, '..'))).toBe(false);
    expect(readFileSync(backup, 'utf8')).toBe('mode=kiosk\n');
    // Bad values are refused before anything starts.
    for (const flag of ['--keep-uploads', '--keep-jobs', '--keep-history']) {
      const bad = new Proc('bad keep', join(import.meta.dirname, '../../scripts/UpdateServer.sh'), ['0', flag, 'soon'], { NXT_STATE_DIR: join(dir, 'other') });
      expect(await bad.exited).toBe(2);
      expect(bad.output).toMatch(new RegExp(`${flag} "soon" is not a number of days`));
    }
  });

  it('a put whose temporary name holds a planted link fails, and the file the link names is untouched', async () => {
    const { server, id, roots, dir } = await setup();
    const outside = join(dir, 'precious.conf');
    writeFileSync(outside, 'keep me\n');
    symlinkSync(outside, join(roots.dropbox, 'update.bin.nxt-part'));
    const local = join(dir, 'update.bin');
    writeFileSync(local, randomBytes(20_000));
    expect(await job(server, `put ${id} ${local} update.bin`)).toMatch(/: transfer failed — .*symbolic link: refusing to write through it/);
    expect(readFileSync(outside, 'utf8')).toBe('keep me\n');
    expect(statSync(outside).mode & 0o200).toBe(0o200); // not made read-only either
  });

  it('refuses names that leave the roots (and a --grep that could hang a device) when they are queued, and links that lead out on the device, touching nothing outside', async () => {
    const { server, id, roots, dir } = await setup();
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'keep'), 'keep me');
    // The server checks names as the device would: refused at once, never queued.
    const refused = async (command: string): Promise<string> => server.run(`job ${command}`, /error.*\n/);
    expect(await refused(`backup ${id} ../../outside/keep`)).toMatch(/error \[usage\]: "\.\.\/\.\.\/outside\/keep" leaves its root/);
    expect(await refused(`backup ${id} /etc/passwd`)).toMatch(/error \[usage\]: "\/etc\/passwd" is an absolute path/);
    expect(await refused(`put ${id} ${join(dir, 'server/release.pub')} ../outside/planted`)).toMatch(/error \[usage\]: .*leaves its root/);
    expect(await refused(`clean ${id} logs/../../outside`)).toMatch(/error \[usage\]: .*leaves its root/);
    expect(await refused(`clean ${id} etc`)).toMatch(/error \[usage\]: "etc" must start with a root/);
    // A pattern that only a backtracking engine runs (and so might run for hours on the device).
    expect(await refused(`logs ${id} --grep a(?!b)`)).toMatch(/error \[usage\]: --grep "a\(\?!b\)": .*cannot be matched in linear time/);
    expect(await server.run('jobs', /no jobs\n/)).toMatch(/no jobs/); // none of them was queued
    // A link inside a root that leads out is the device's to find.
    symlinkSync(join(outside, 'keep'), join(roots.config, 'innocent.conf'));
    expect(await job(server, `backup ${id} innocent.conf`)).toMatch(/: invalid job — "innocent\.conf" leads out of its root through a link/);
    expect(readdirSync(outside)).toEqual(['keep']);
    expect(readFileSync(join(outside, 'keep'), 'utf8')).toBe('keep me');
    expect(existsSync(join(dir, 'server/uploads'))).toBe(false);
    expect(await server.run('results --json', /\]\n/)).toMatch(/"result":"invalid job"/);
  });

  it('a job queued for an offline device runs once when it comes online, and not again after a restart', async () => {
    const { server, port, device, id, roots, dir } = await setup(false);
    await device.stop();
    writeFileSync(join(roots.config, 'app.conf'), 'x=1\n');
    await server.run(`job backup ${id} app.conf`, /queued/);
    expect(await server.run('jobs', /backup +queued.*\n/)).toMatch(/backup +queued/);
    // The server restarts too: the queue is on disk.
    await server.stop();
    const { proc: again } = await startServer(join(dir, 'server'), ['--port', String(port)]);
    const online = await startDevice(dir, port, roots, true, 'device online');
    await again.waitFor(/job 1 \(backup\) on \w+: ok/);
    await online.waitFor(/job 1: ok/);
    await online.stop();
    const restarted = await startDevice(dir, port, roots, true, 'device restarted');
    // It polls (the server answers "nothing waiting") and runs nothing.
    await restarted.run('maintenance off', /maintenance mode off/);
    expect(restarted.output).not.toMatch(/running job/);
    expect((await again.run('results --json', /\]\n/)).match(/"id":1/g)).toHaveLength(1);
  });
});
