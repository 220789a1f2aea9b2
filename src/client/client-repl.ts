/** The device's console: `NxtClient# `. */
import type { Readable, Writable } from 'node:stream';
import type { LogSink } from '../util/log.js';
import { formatProductVersion } from '../plugin/plugin-shape.js';
import { formatReleaseVersion } from '../protocol/release-version.js';
import { mib } from '../util/format.js';
import { helpCommand, Repl, terminalColumns, type Command } from '../util/repl.js';
import { NxtError } from '../errors.js';
import type { JobClient } from './job-client.js';
import type { ClientAgent, DownloadProgress } from './agent.js';

export interface ClientReplOptions {
  readonly agent: ClientAgent;
  readonly clientIdHex: string;
  readonly jobs?: JobClient;
  readonly input: Readable;
  readonly output: Writable;
  /** No console: every line is a log record (cli/console-mode.ts). */
  readonly headless?: LogSink;
  readonly onExit: () => void;
  readonly onEnd?: () => void;
}

export function createClientRepl(o: ClientReplOptions): Repl {
  const { agent } = o;
  const say = (line: string): void => { o.output.write(`${line}\n`); };
  const commands: Record<string, Command> = {
    help: helpCommand(() => commands, say, terminalColumns(o.output)),
    show: {
      usage: 'show version',
      help: 'print the active plugin\'s product version and release',
      run: (args) => {
        if (args[0] !== 'version' || args.length !== 1) { say('usage: show version'); return; }
        say(formatProductVersion(agent.active.product));
        say(`release = ${formatReleaseVersion(agent.active.version)} (${agent.active.name})`);
        const waiting = agent.pendingUpgrade;
        if (waiting) say(`waiting for upgrade: ${waiting.name} ${formatReleaseVersion(waiting.version)}`);
      },
    },
    stats: {
      usage: 'stats',
      help: 'registration state, messages, and datagrams the secure channel dropped (forged, replayed, …)',
      run: () => {
        const s = agent.stats;
        const c = agent.channel.stats;
        say(`${agent.isRegistered ? 'registered' : 'not registered'}; ${c.handshakes} handshakes; dropped: malformed ${c.malformed}, bad tag ${c.badTag}, replayed ${c.replayed}, unknown session ${c.unknownSession}, foreign ${c.foreign}, bad handshake ${c.badHandshake}; messages ${s.datagrams}, unknown transfer ${s.unknownTransfer}; pieces ${s.pieceFrames} (${s.groupPieces} by multicast, ${s.badPieces} dropped); chunk frames ${s.chunkFrames} (${s.groupFrames} by multicast, ${s.groupUnwanted} of their chunks held already or beyond the window), bad chunks ${s.badChunks}`);
      },
    },
    maintenance: {
      usage: 'maintenance on|off',
      help: 'maintenance mode: while on, the device asks the server for jobs (logs, backup, put, clean) and runs them',
      run: (args) => {
        if (args.length !== 1 || (args[0] !== 'on' && args[0] !== 'off')) throw new NxtError('usage', 'usage: maintenance on|off');
        if (!o.jobs) throw new NxtError('usage', 'this device runs no jobs');
        o.jobs.setMaintenance(args[0] === 'on');
      },
    },
    upgrade: {
      usage: 'upgrade',
      help: 'activate the verified update this device is keeping (defer policy)',
      run: async () => {
        const waiting = agent.pendingUpgrade;
        if (!waiting) { say('no update is waiting'); return; }
        say(`activating ${waiting.name} ${formatReleaseVersion(waiting.version)}`);
        await agent.upgrade();
      },
    },
    exit: { usage: 'exit', help: 'stop the client', run: () => o.onExit() },
  };
  const repl: Repl = new Repl({
    prompt: 'NxtClient# ',
    input: o.input,
    output: o.output,
   
    headless: o.headless,
    onEnd: o.onEnd,
    onInterrupt: o.onExit,
    commands,
  });
  agent.on('registered', () => repl.print('registered with the server'));
  o.jobs?.on('maintenance', (on: boolean) => repl.print(on ? 'maintenance mode on: asking the server for jobs' : 'maintenance mode off'));
  o.jobs?.on('log', (line: string) => repl.print(line));
  agent.on('enrollment', (state: 'pending' | 'rejected') => repl.print(state === 'pending'
    ? `waiting for the operator to approve this device (on the server: approve ${o.clientIdHex.slice(0, 12)}), or restart it with --enroll-token`
    : 'the server rejected this device: it will receive no updates (the operator can still approve it)'));
  agent.on('activated', (a: { product: Parameters<typeof formatProductVersion>[0] }) => repl.print(formatProductVersion(a.product)));
  agent.on('refused', (r: { message: string }) => repl.print(`update refused: ${r.message}`, 'warn'));
  agent.on('rolled-back', (r: { active: { product: Parameters<typeof formatProductVersion>[0] } }) => repl.print(formatProductVersion(r.active.product)));
  agent.on('deferred', (m: { name: string; version: Parameters<typeof formatReleaseVersion>[0] }) => repl.print(
    `update ${m.name} ${formatReleaseVersion(m.version)} verified and kept: type upgrade to activate it`));
  agent.on('log', (line: string) => repl.print(line));
  agent.channel.on('warning', (line: string) => repl.print(`warning: ${line}`, 'warn'));
  agent.on('progress', (p: DownloadProgress) => {
    const pct = Math.floor((100 * p.receivedBytes) / p.totalBytes);
    repl.print(`downloading ${p.name}: ${pct}% (${mib(p.receivedBytes)} of ${mib(p.totalBytes)}), ${mib(p.bytesPerSecond)}/s`);
  });
  return repl;
}
