/** Alerts with a real SMTP server and a real HTTP listener on 127.0.0.1. */
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';

const V2 = join(ROOT, 'plugins/libfunctional_2_0.mjs');
const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  await stopAll();
  for (const c of closers.splice(0)) await c();
  expect(runningCount()).toBe(0);
});

/** Something that fills as events arrive, with a way to wait until it holds `n`. */
class Inbox<T> {
  readonly items: T[] = [];
  private waiters: (() => void)[] = [];
  add(item: T): void { this.items.push(item); for (const w of this.waiters.splice(0)) w(); }
  async atLeast(n: number, timeoutMs = 15_000): Promise<T[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.items.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${this.items.length} of ${n} arrived`);
      await new Promise<void>((res) => { this.waiters.push(res); setTimeout(res, 200); });
    }
    return this.items;
  }
}

async function webhook(): Promise<{ url: string; inbox: Inbox<Record<string, string>> }> {
  const inbox = new Inbox<Record<string, string>>();
  const http: HttpServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => { inbox.add(JSON.parse(body) as Record<string, string>); res.end('ok'); });
  });
  await new Promise<void>((res) => http.listen(0, '127.0.0.1', res));
  closers.push(() => new Promise((res) => http.close(() => res())));
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/hook`, inbox };
}

async function mailServer(): Promise<{ url: string; inbox: Inbox<string> }> {
  const inbox = new Inbox<string>();
  const smtp = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS'], logger: false,
    onData(stream, _session, callback) {
      let text = '';
      stream.on('data', (d: Buffer) => { text += d.toString(); });
      stream.on('end', () => { inbox.add(text); callback(); });
    },
  });
  await new Promise<void>((res) => smtp.listen(0, '127.0.0.1', res));
  closers.push(() => new Promise((res) => smtp.close(() => res())));
  return { url: `smtp://127.0.0.1:${(smtp.server.address() as AddressInfo).port}`, inbox };
}

describe('alerts', () => {
  it('a failed push produces one email and one webhook with the device id and the reason', async () => {
    const dir = tempDir();
    const hook = await webhook();
    const mail = await mailServer();
    const { proc: server, port } = await startServer(join(dir, 'server'), [
      '--notify-webhook', hook.url, '--smtp', mail.url, '--notify-email', 'ops@example.com',
    ]);
    const a = await startClient('a', port, join(dir, 'a'), join(dir, 'server/release.pub'), '127.0.0.1', ['--max-module-bytes', '100']);
    const id = a.output.match(/nxt client ([0-9a-f]{32})/)![1]!;
    expect(await server.run(`push ${V2}`, /push finished/)).toMatch(/failed \(tooLarge\)/);
    const [alert] = await hook.inbox.atLeast(1);
    expect(alert).toMatchObject({ event: 'push-failed', device: id, reason: 'tooLarge', release: 'libfunctional_2_0.mjs 2.0.0' });
    const [email] = await mail.inbox.atLeast(1);
    expect(email).toMatch(/To: ops@example\.com/);
    expect(email).toMatch(new RegExp(`Subject: nxt: update failed on ${id.slice(0, 12)}: tooLarge`));
    expect(email).toContain(`update failed on device ${id}`);
    // One alert per failure: a second failure makes exactly a second of each.
    await server.run(`push ${V2}`, /push finished/);
    await hook.inbox.atLeast(2);
    await mail.inbox.atLeast(2);
    // A duplicate would be sent together with the alert it repeats; after another console round
    // trip there are still exactly two of each.
    await server.run('stats', /channel: .*\n/);
    expect([hook.inbox.items.length, mail.inbox.items.length]).toEqual([2, 2]);
  });

  it('an unreachable mail server does not stall pushes; the lost alert is logged', async () => {
    const dir = tempDir();
    const { proc: server, port } = await startServer(join(dir, 'server'), [
      '--smtp', 'smtp://127.0.0.1:9', '--notify-email', 'ops@example.com', '--notify-retry', '100',
    ]);
    const a = await startClient('a', port, join(dir, 'a'), join(dir, 'server/release.pub'), '127.0.0.1', ['--max-module-bytes', '100']);
    const started = Date.now();
    expect(await server.run(`push ${V2}`, /push finished/)).toMatch(/failed \(tooLarge\)/);
    expect(Date.now() - started).toBeLessThan(3000);
    await a.stop();
    const b = await startClient('b', port, join(dir, 'b'), join(dir, 'server/release.pub'));
    expect(await server.run(`push ${V2} --to ${b.output.match(/nxt client ([0-9a-f]{12})/)![1]}`, /push finished/)).toMatch(/1 done/);
    await server.waitFor(/warning: email alert about \w+ \(push-failed\) not delivered after 5 attempts: .*ECONNREFUSED/);
  });

  it('says when an online device stays behind the latest release', async () => {
    const dir = tempDir();
    const hook = await webhook();
    const { proc: server, port } = await startServer(join(dir, 'server'), ['--notify-webhook', hook.url, '--behind-after', '1']);
    await startClient('a', port, join(dir, 'a'), join(dir, 'server/release.pub'));
    const b = await startClient('b', port, join(dir, 'b'), join(dir, 'server/release.pub'), '127.0.0.1', ['--policy', 'defer']);
    await server.run(`push ${V2}`, /push finished/);
    const [alert] = await hook.inbox.atLeast(1);
    expect(alert).toMatchObject({ event: 'behind', device: expect.stringMatching(new RegExp(`^${b.output.match(/nxt client ([0-9a-f]{12})/)![1]}`)), reason: 'runs 1.0.0', release: 'libfunctional_2_0.mjs 2.0.0' });
  });
});
