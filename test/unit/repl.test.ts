/** The server console driven through streams, against a real server on 127.0.0.1. */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { openUdpEndpoint } from '../../src/net/endpoint.js';
import { loadOrCreateReleaseKey } from '../../src/security/release-key.js';
import { History } from '../../src/server/history.js';
import { NxtServer } from '../../src/server/server.js';
import { Devices } from '../../src/server/devices.js';
import { ReleaseStore } from '../../src/server/release-store.js';
import { keyPairFromSecret } from '../../src/session/handshake.js';
import { ServerChannel } from '../../src/session/server-channel.js';
import { createServerRepl } from '../../src/server/server-repl.js';
import { systemClock, systemWallClock } from '../../src/util/clock.js';
import { Repl, splitWords } from '../../src/util/repl.js';
import { tempDir } from '../support/processes.js';

let server: NxtServer | undefined;
afterEach(async () => { await server?.close(); });

async function console_(): Promise<{ type: (l: string, until?: RegExp) => Promise<string>; exited: () => boolean }> {
  const { signer } = loadOrCreateReleaseKey(tempDir('nxt-repl-'), (n) => randomBytes(n));
  const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
  const channel = new ServerChannel({
    endpoint: await openUdpEndpoint({ port: 0, host: '127.0.0.1' }), clock: systemClock, identity: keyPairFromSecret(random(32)), random,
  });
  server = new NxtServer({ channel, clock: systemClock, wallClock: systemWallClock, devices: new Devices(undefined), randomU32: () => randomBytes(4).readUInt32BE(0) });
  const input = new PassThrough();
  const output = new PassThrough();
  let text = '';
  output.on('data', (d: Buffer) => { text += d.toString(); });
  let exited = false;
  const history = new History(undefined);
  const releases = new ReleaseStore(tempDir('nxt-repl-'));
  const prepareStored = (): Promise<never> => Promise.reject(new Error('not in these tests'));
  createServerRepl({
    server, signer, publicKey: signer.publicKey, clock: systemClock, wallClock: systemWallClock, input, output, history, releases, prepareStored,
    onExit: () => { exited = true; },
  }).start();
  // Each command ends when the next prompt appears; a background one's (push) output follows the
  // prompt, as it happens: `until` says what to wait for then.
  const type = (line: string, until?: RegExp): Promise<string> => new Promise((resolve, reject) => {
    const from = text.length;
    const timer = setTimeout(() => reject(new Error(`no prompt after "${line}": ${text.slice(from)}`)), 5000);
    const check = (): void => {
      const out = text.slice(from);
      if (until ? until.test(out) : out.endsWith('NxtServer# ')) { clearTimeout(timer); output.off('data', check); resolve(out); }
    };
    output.on('data', check);
    input.write(`${line}\n`);
  });
  return { type, exited: () => exited };
}

describe('the server console', () => {
  it('lists its commands', async () => {
    const c = await console_();
    const out = await c.type('help');
    for (const cmd of ['push', 'clients', 'versions', 'rollout', 'tag', 'requests', 'status', 'stats', 'exit']) expect(out).toMatch(new RegExp(`^  ${cmd} +\\S`, 'm'));
    // An overview that reads in 80 columns: a line a command, the rest of its text cut with "…".
    const listed = out.replace(/NxtServer# $/, '').trimEnd().split('\n');
    for (const line of listed) expect(line.length).toBeLessThanOrEqual(80);
    expect(listed.find((l) => l.startsWith('  push '))).toMatch(/sign a plugin module .*…$/);
    // One command: its usage, then all it says, its forms one by one, in 80 columns.
    const rollout = await c.type('help rollout');
    expect(rollout).toMatch(/^rollout start\|status\|pause\|resume\|cancel\|latest …\n {2}staged campaigns.*:\n {4}rollout start <release> \[--to GROUP\]/);
    expect(rollout).toContain('\n    rollout latest: pushes the newest release');
    for (const line of rollout.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
    // A bracketed option is never split across lines.
    expect(await c.type('help push')).toMatch(/\n {4}\[--for type=T\|product=P\|arch=A\|channel=C\|agent=RANGE …\]\n/);
    expect(await c.type('help nosuch')).toMatch(/no command "nosuch"/);
  });

  it('names an unknown command and keeps going', async () => {
    const c = await console_();
    expect(await c.type('frobnicate now')).toMatch(/unknown command "frobnicate"/);
    expect(await c.type('clients')).toMatch(/no clients registered/);
  });

  it('explains bad arguments', async () => {
    const c = await console_();
    expect(await c.type('push')).toMatch(/error \[usage\]: usage: push <file>/);
    expect(await c.type('push a b')).toMatch(/usage: push/);
    expect(await c.type('push x_1_0.mjs --colour red')).toMatch(/unknown option --colour/);
    expect(await c.type('push "unterminated')).toMatch(/unbalanced quote/);
    expect(await c.type('history a b')).toMatch(/usage: history/);
    expect(await c.type('history --last 0')).toMatch(/--last takes a positive whole number/);
    expect(await c.type('rollout now')).toMatch(/usage: rollout start <release> \[options\] \| status\|pause\|resume\|cancel \[ID\] \| latest/);
    expect(await c.type('rollout latest', /pushed yet|error.*\n/)).toMatch(/rollout: nothing has been pushed yet, so there is no latest release/);
    expect(await c.type('tag abc')).toMatch(/usage: tag <ID> <group>/);
    expect(await c.type('tag abc all')).toMatch(/not "all"/);
    expect(await c.type('tag abc kiosks')).toMatch(/no client has an id starting "abc"/);
    expect(await c.type('approve abc')).toMatch(/no device has an id starting "abc"/);
    expect(await c.type('push x_1_0.mjs --to nobody', /error.*\n/)).toMatch(/error \[no-such-client\]: "nobody" is neither a group/);
  });

  it('says when there is no history yet, and answers --json with JSON', async () => {
    const c = await console_();
    expect(await c.type('history')).toMatch(/no push results recorded/);
    for (const cmd of ['clients', 'history', 'releases', 'status', 'versions']) {
      expect(JSON.parse((await c.type(`${cmd} --json`)).replace(/NxtServer# $/, ''))).toEqual([]);
    }
  });

  it('stops on exit', async () => {
    const c = await console_();
    await c.type('exit');
    expect(c.exited()).toBe(true);
  });
});

describe('splitWords', () => {
  it('keeps quoted spaces', () => {
    expect(splitWords(`push "my file_1_0.mjs" --version '2.0'`)).toEqual(['push', 'my file_1_0.mjs', '--version', '2.0']);
  });
});

describe('a console on a terminal', () => {
  /** Streams that say they are a terminal, so readline edits lines, completes and keeps history. */
  function terminal(): { input: PassThrough; output: PassThrough; shows: (text: string) => Promise<void> } {
    const input = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => input });
    const output = Object.assign(new PassThrough(), { isTTY: true, columns: 120 });
    let seen = '';
    const waiters = new Set<() => void>();
    output.on('data', (d: Buffer) => { seen += d.toString(); for (const w of [...waiters]) w(); });
    /** Resolves once the terminal has displayed `text` (what readline echoes or completes). */
    const shows = (text: string): Promise<void> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the terminal never showed ${JSON.stringify(text)}: ${JSON.stringify(seen)}`)), 5000);
      const check = (): void => { if (seen.includes(text)) { clearTimeout(timer); waiters.delete(check); resolve(); } };
      waiters.add(check);
      check();
    });
    return { input, output, shows };
  }

  it('completes commands and their arguments with Tab, and keeps typed lines across sessions', async () => {
    const historyFile = join(tempDir('nxt-history-'), 'console-history');
    let ran: (line: string) => void = () => undefined;
    const commands = {
      tag: { usage: 'tag <ID> <group>', help: '', run: (args: string[]) => ran(`tag ${args.join(' ')}`) },
      untag: { usage: 'untag', help: '', run: () => undefined },
    };
    const nextRun = (): Promise<string> => new Promise((res) => { ran = res; });
    const t = terminal();
    const first = new Repl({ prompt: '# ', input: t.input, output: t.output, commands, historyFile, completeArgs: () => ['a1b2c3d4e5f6', 'kiosks'] });
    first.start();
    // Keys, and what the terminal shows after each: every Tab is answered before the next key is
    // typed, as at a keyboard.
    for (const [keys, shown] of [['ta', 'ta'], ['\t', 'tag'], [' a1', 'a1'], ['\t', 'a1b2c3d4e5f6'], [' kio', 'kio'], ['\t', 'kiosks']] as const) {
      t.input.write(keys);
      await t.shows(shown);
    }
    const done = nextRun();
    t.input.write('\r');
    expect(await done).toBe('tag a1b2c3d4e5f6 kiosks');
    first.close();
    expect(readFileSync(historyFile, 'utf8')).toBe('tag a1b2c3d4e5f6 kiosks\n');

    // A new session starts with that line in its history: arrow-up brings it back.
    const t2 = terminal();
    const again = new Repl({ prompt: '# ', input: t2.input, output: t2.output, commands, historyFile });
    again.start();
    t2.input.write('\x1b[A');
    await t2.shows('tag a1b2c3d4e5f6 kiosks');
    const recalled = nextRun();
    t2.input.write('\r');
    expect(await recalled).toBe('tag a1b2c3d4e5f6 kiosks');
    again.close();
  });
});
