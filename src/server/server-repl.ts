/** The operator's console: `NxtServer# `. */
import type { Readable, Writable } from 'node:stream';
import { NxtError } from '../errors.js';
import { formatReleaseVersion } from '../protocol/release-version.js';
import type { Signer } from '../security/release-key.js';
import { displayAddress } from '../net/endpoint.js';
import type { Clock, WallClock } from '../util/clock.js';
import { mib } from '../util/format.js';
import { Repl, takeOptions } from '../util/repl.js';
import { prepareRelease } from './release.js';
import { summarizeReleases, type History } from './history.js';
import type { ClientRecord } from './registry.js';
import { describeInventory, type DeviceRecord, type DeviceState } from './devices.js';
import { describeOutcome, shortId, type NxtServer, type PushReport } from './server.js';

export interface ServerReplOptions {
  readonly server: NxtServer;
  /** Absent when the release key is kept offline: pushes must then be pre-signed. */
  readonly signer?: Signer;
  readonly publicKey: Uint8Array;
  readonly clock: Clock;
  readonly wallClock: WallClock;
  readonly input: Readable;
  readonly output: Writable;
  readonly onExit: () => void;
  readonly onEnd?: () => void;
  /** How long signed manifests stay valid (seconds). */
  readonly manifestTtlSeconds?: number;
  /** Read by `history` and `releases`; the server writes it. */
  readonly history: History;
}

/** Above this many clients, progress is one summary line rather than a line per client. */
const PROGRESS_DETAIL_CLIENTS = 5;
const PROGRESS_EVERY_MS = 1000;

/** Print push progress every second: per client (percent, rate, resends), or a fleet summary. */
function progressTicker(server: NxtServer, chunkSize: number, clock: Clock, say: (line: string) => void): NodeJS.Timeout {
  const last = new Map<number, { acked: number; at: number }>();
  return setInterval(() => {
    const now = clock.now();
    const sessions = server.activeSessions;
    if (sessions.length === 0) return;
    let totalRate = 0;
    let acked = 0;
    let total = 0;
    const lines: string[] = [];
    for (const s of sessions) {
      const p = s.progress;
      const prev = last.get(s.transferId) ?? { acked: 0, at: s.startedAt };
      const rate = ((p.acked - prev.acked) * chunkSize) / Math.max(1, now - prev.at) * 1000;
      last.set(s.transferId, { acked: p.acked, at: now });
      totalRate += rate;
      acked += p.acked;
      total += p.total;
      const pct = Math.floor((100 * p.acked) / p.total);
      lines.push(`  ${shortId(s.client.id)} ${p.phase === 'verifying' ? 'verifying' : `${pct}%`} ${mib(rate)}/s, ${p.retransmits} resent`);
    }
    if (sessions.length <= PROGRESS_DETAIL_CLIENTS) for (const l of lines) say(l);
    else say(`  ${sessions.length} clients in progress: ${Math.floor((100 * acked) / total)}% of all chunks, ${mib(totalRate)}/s together`);
  }, PROGRESS_EVERY_MS);
}

/** Online clients named by id prefixes ("a1b2,c3d4"): each prefix must name exactly one. */
function pickClients(online: ClientRecord[], list: string): ClientRecord[] {
  const picked = new Set<ClientRecord>();
  for (const prefix of list.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const hits = online.filter((c) => c.id.startsWith(prefix.toLowerCase()));
    if (hits.length === 0) throw new NxtError('no-such-client', `no online client has an id starting "${prefix}" (see: clients)`);
    if (hits.length > 1) throw new NxtError('ambiguous-client', `"${prefix}" names ${hits.length} clients: give more of the id`);
    picked.add(hits[0]!);
  }
  if (picked.size === 0) throw new NxtError('usage', '--to needs at least one client id');
  return [...picked];
}

/** The one device an id prefix names, among `devices`. */
function pickDevice(devices: DeviceRecord[], prefix: string | undefined, usage: string): DeviceRecord {
  if (prefix === undefined || prefix === '') throw new NxtError('usage', `usage: ${usage}`);
  const hits = devices.filter((d) => d.id.startsWith(prefix.toLowerCase()));
  if (hits.length === 0) throw new NxtError('no-such-device', `no device has an id starting "${prefix}" (see: requests, clients)`);
  if (hits.length > 1) throw new NxtError('ambiguous-client', `"${prefix}" names ${hits.length} devices: give more of the id`);
  return hits[0]!;
}

export function createServerRepl(o: ServerReplOptions): Repl {
  const { server } = o;
  const say = (line: string): void => { o.output.write(`${line}\n`); };
  const repl: Repl = new Repl({
    prompt: 'NxtServer# ',
    input: o.input,
    output: o.output,
    onEnd: o.onEnd,
    commands: {
      help: {
        usage: 'help',
        help: 'list the commands',
        run: () => say(`commands:\n${repl.helpText()}`),
      },
      push: {
        usage: 'push <file> [--version X.Y.Z] [--to ID[,ID…]]',
        help: 'sign a plugin module (or use its .nxt-signed file) and send it to every online client, or to those named (id prefixes)',
        run: async (args) => {
          const { positional, options } = takeOptions(args, ['version', 'to']);
          const [file, extra] = positional;
          if (file === undefined || extra !== undefined) throw new NxtError('usage', 'usage: push <file> [--version X.Y.Z] [--to ID[,ID…]]');
          const online = server.onlineClients();
          const clients = options.to === undefined ? online : pickClients(online, options.to);
          const release = await prepareRelease(file, {
            version: options.version, signer: o.signer, publicKey: o.publicKey, now: o.wallClock.wallNow(), ttlSeconds: o.manifestTtlSeconds,
          });
          const m = release.manifest;
          if (clients.length === 0) {
            const known = server.registry.all().length;
            say(known === 0
              ? 'push: no clients are registered; nothing sent (start a client, then push again)'
              : `push: none of the ${known} registered clients is online (no renewal within the lease); nothing sent`);
            return;
          }
          say(`push ${m.name} ${formatReleaseVersion(m.version)} (${m.size} bytes, sha256 ${m.sha256.slice(0, 12)}…) to ${clients.length} client(s)`);
          const ticker = progressTicker(server, m.chunkSize, o.clock, say);
          const reports = await server.push(release, clients).finally(() => clearInterval(ticker));
          const ok = reports.filter((r) => r.ok).length;
          say(`push finished: ${ok} done, ${reports.length - ok} failed`);
        },
      },
      clients: {
        usage: 'clients',
        help: 'list registered clients (id, address, release, product version, state)',
        run: () => {
          const now = o.clock.now();
          const all = server.registry.all();
          if (all.length === 0) { say('no clients registered'); return; }
          for (const c of all) {
            const state = server.registry.isOnline(c, now) ? 'online' : 'offline';
            const ago = Math.round((now - c.lastSeen) / 1000);
            say(`  ${shortId(c.id)}  ${displayAddress(c.peer).padEnd(22)} release ${formatReleaseVersion(c.version).padEnd(8)} ${c.product.major}.${c.product.minor} ${c.product.productName}  ${state}, seen ${ago}s ago`);
          }
        },
      },
      requests: {
        usage: 'requests',
        help: 'devices waiting for approval, and rejected or revoked ones: id, key fingerprint, what they say they are',
        run: () => {
          const devices = server.devices.all().filter((d) => d.state !== 'approved');
          if (devices.length === 0) { say('no enrollment requests'); return; }
          for (const d of devices) {
            say(`  ${shortId(d.id)}  ${d.state.padEnd(8)} ${d.address.padEnd(22)} ${d.fingerprint}  ${describeInventory(d.inventory)}  asked ${d.requestedAt}`);
          }
        },
      },
      ...Object.fromEntries(([
        ['approve', 'approved', 'let a device into the fleet: it is registered now and receives pushes'],
        ['reject', 'rejected', 'turn a device away: it receives nothing (approve can still let it in later)'],
        ['revoke', 'revoked', 'withdraw a device\'s key: its sessions end, its handshakes are refused, it leaves the fleet'],
      ] as const).map(([name, state, help]) => [name, {
        usage: `${name} <ID>`,
        help,
        run: (args: string[]) => {
          if (args.length !== 1) throw new NxtError('usage', `usage: ${name} <ID>`);
          const d = pickDevice(server.devices.all(), args[0], `${name} <ID>`);
          if (d.state === state) { say(`${shortId(d.id)} is already ${state}`); return; }
          server.decide(d.id, state satisfies Exclude<DeviceState, 'pending'>);
          say(`${shortId(d.id)} ${state} (${describeInventory(d.inventory)})`);
        },
      }])),
      history: {
        usage: 'history [ID] [--last N]',
        help: 'push results, oldest first (kept across restarts in the state dir); for one client with an id prefix',
        run: (args) => {
          const { positional, options } = takeOptions(args, ['last']);
          if (positional.length > 1) throw new NxtError('usage', 'usage: history [ID] [--last N]');
          const last = options.last === undefined ? 20 : Number(options.last);
          if (!Number.isInteger(last) || last < 1) throw new NxtError('usage', '--last takes a positive whole number');
          const entries = o.history.list(positional[0]).slice(-last);
          if (entries.length === 0) { say('no push results recorded'); return; }
          for (const e of entries) {
            say(`  ${e.at}  ${shortId(e.client)}  ${e.module} ${e.version}  ${e.result}${e.result === 'ok' ? '' : `: ${e.message}`}  (${Math.round(e.elapsedMs)} ms, ${e.resent} resent)`);
          }
        },
      },
      releases: {
        usage: 'releases',
        help: 'every module pushed (from the history): version, first and last push, devices it was installed on, failures',
        run: () => {
          const releases = summarizeReleases(o.history.list());
          if (releases.length === 0) { say('nothing pushed yet'); return; }
          for (const r of releases) {
            say(`  ${r.module} ${r.version}  sha256 ${r.sha256.slice(0, 12)}…  first ${r.firstPushed}, last ${r.lastPushed}  installed on ${r.installedOn}, ${r.failures} failed`);
          }
        },
      },
      stats: {
        usage: 'stats',
        help: 'counters of messages and of datagrams the secure channel dropped (forged, replayed, …), and pushes in progress',
        run: () => {
          const s = server.stats;
          const c = server.channel.stats;
          say(`messages ${s.datagrams}, malformed ${s.malformed}, unexpected ${s.unexpected}, foreign ${s.foreign}, registrations ${s.registrations}, refused ${s.refused}, impersonation ${s.impersonation}; ${server.registry.size} clients known`);
          say(`channel: ${server.channel.sessionCount} sessions, ${c.handshakes} handshakes; dropped: unauthenticated ${c.unauthenticated}, malformed ${c.malformed}, bad tag ${c.badTag}, replayed ${c.replayed}, wrong address ${c.wrongAddress}, unknown session ${c.unknownSession}, bad cookie ${c.badCookie}, bad handshake ${c.badHandshake}, replayed handshake ${c.replayedHandshake}, revoked key ${c.revokedKey}, rate-limited ${c.rateLimited}; cookies sent ${c.cookiesSent}`);
          for (const p of server.activeSessions) {
            const g = p.progress;
            say(`  push to ${shortId(p.client.id)}: ${g.phase} ${g.acked}/${g.total} chunks, ${g.retransmits} resent, ${g.timeouts} timeouts`);
          }
        },
      },
      exit: {
        usage: 'exit',
        help: 'stop the server',
        run: () => o.onExit(),
      },
    },
  });
  server.on('client-registered', (c) => repl.print(`client ${shortId(c.id)} registered from ${displayAddress(c.peer)} (release ${formatReleaseVersion(c.version)})`));
  server.on('push-result', (r: PushReport) => repl.print(`  ${shortId(r.client.id)} ${displayAddress(r.client.peer)}  ${describeOutcome(r)}`));
  server.on('warning', (w: string) => repl.print(`warning: ${w}`));
  server.on('enrollment-request', (d: DeviceRecord) => repl.print(
    `device ${shortId(d.id)} asks to join from ${d.address} (${describeInventory(d.inventory)}, key ${d.fingerprint}): approve ${shortId(d.id)} or reject ${shortId(d.id)}`));
  return repl;
}
