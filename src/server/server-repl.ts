/** The operator's console: `NxtServer# `. */
import type { Readable, Writable } from 'node:stream';
import type { LogSink } from '../util/log.js';
import { errorMessage, NxtError } from '../errors.js';
import { compareReleaseVersions, formatReleaseVersion } from '../protocol/release-version.js';
import type { Signer } from '../security/release-key.js';
import { displayAddress } from '../net/endpoint.js';
import type { Clock, WallClock } from '../util/clock.js';
import { bar, duration, mib, size, table } from '../util/format.js';
import { peerText } from '../util/peer-text.js';
import { boundedRegExp } from '../util/bounded-regexp.js';
import { MAX_REPORT_BYTES } from './job-files.js';
import { QuietLines } from './quiet-lines.js';
import { helpCommand, Repl, takeOptions, takeRepeated, terminalColumns, type Command } from '../util/repl.js';
import { callerFile, consoleCommand, schema, type AnyTypedCommand, type RunContext, type TypedCommand } from './typed-command.js';
import type { DeviceView, RequestView } from './views.js';
import { describeCompatibility, mismatch, parseFor, type Compatibility, type DeviceFacts } from '../security/compatibility.js';
import { prepareRelease, type Release } from './release.js';
import { describeStored, type ReleaseStore, type StoredRelease } from './release-store.js';
import { ResultCode, resultCodeName } from '../protocol/result-codes.js';
import type { Job, JobKindName, JobStore } from './job-store.js';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { hashFile } from '../util/hash-file.js';
import { severityRank } from '../jobs/log-filter.js';
import { checkName, InvalidJob, splitRootDir } from '../jobs/roots.js';
import type { History, ReleaseSummary } from './history.js';
import type { ClientRecord } from './registry.js';
import { describeInventory, type DeviceRecord, type DeviceState } from './devices.js';
import {
  Campaign, DEFAULT_MAX_FAILURES, DEFAULT_STAGES, DEFAULT_SUCCESS_PERCENT, describeStages, formatWindow, parseLimit, parsePercent, parseStages, parseWindow,
  type CampaignEvent, type CampaignRecord, type CampaignSpec, type DeviceStep, type Limit,
} from './campaign.js';
import type { Rollouts } from './rollouts.js';
import type { ApiTokens } from './api-tokens.js';
import { matchesWhere, parseWhere } from './report-filter.js';
import { describeOutcome, describeTrialOutcome, shortId, type GroupPushReport, type NxtServer, type PushReport, type ServerStats, type TrialOutcome } from './server.js';
import type { ChannelStats } from '../session/server-channel.js';
import { MAX_RATE_MBIT, MIN_RATE_MBIT, parseMaxRateMbit, type SharedRate } from '../transfer/rate-share.js';
import type { PushProgress } from './push-session.js';

export interface ServerReplOptions {
  readonly server: NxtServer;
  /** Absent when the release key is kept offline: pushes must then be pre-signed. */
  readonly signer?: Signer;
  readonly publicKey: Uint8Array;
  readonly clock: Clock;
  readonly wallClock: WallClock;
  readonly input: Readable;
  readonly output: Writable;
  /** No console: every line is a log record (cli/console-mode.ts). */
  readonly headless?: LogSink;
  readonly onExit: () => void;
  readonly onEnd?: () => void;
  /** How long signed manifests stay valid (seconds). */
  readonly manifestTtlSeconds?: number;
  /** Read by `history` and `releases`; the server writes it. */
  readonly history: History;
  /** Typed commands kept across sessions (a terminal only). */
  readonly historyFile?: string;
  /** Maintenance jobs: their queue, and where files to put are kept. */
  readonly jobs?: {
    readonly store: JobStore;
    readonly stateDir: string;
    /** Several nodes: put a job's file where whichever node holds its device can fetch it. */
    readonly share?: (sha256: string, path: string, size: number) => Promise<void>;
  };
  /** Modules pushed so far, for `rollout latest`. */
  readonly releases: ReleaseStore;
  readonly prepareStored: (stored: StoredRelease) => Promise<Release>;
  /** API tokens (`token …`, the HTTP API). */
  readonly tokens?: ApiTokens;
  /** Staged rollout campaigns (`rollout start` …). */
  readonly rollouts?: Rollouts;
}

export function describeGroupPush(g: GroupPushReport): string {
  return `  multicast ${g.group}: ${g.datagrams} datagrams for ${g.devices} devices${g.passMs === undefined ? '' : ` (first pass ${Math.round(g.passMs)} ms)`}, ${g.repaired} chunks sent to the group again, `
    + describeHandOver(g.handedOver);
}

const HAND_OVER_REASONS: ReadonlyArray<[keyof GroupPushReport['handedOver'], string]> = [
  ['deaf', 'not hearing the group'], ['silent', 'silent for seconds'], ['behind', 'too far behind it'], ['lossy', 'losing far more than the others'], ['declined', 'not joining it'],
];

function describeHandOver(counts: GroupPushReport['handedOver']): string {
  const parts = HAND_OVER_REASONS.filter(([why]) => counts[why] > 0).map(([why, says]) => `${counts[why]} ${says}`);
  const total = HAND_OVER_REASONS.reduce((sum, [why]) => sum + counts[why], 0);
  return `${total} device(s) served by unicast${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`;
}

export function describeCampaignEvent(c: Campaign, e: CampaignEvent): string {
  const what = `rollout ${c.id} (${c.record.spec.release.name} ${c.record.spec.release.version})`;
  switch (e.kind) {
    case 'stage': return `${what}: stage ${e.stage + 1} of ${c.record.spec.stages.length} begins: ${e.devices} device(s)`;
    case 'paused': return `${what} paused by itself: ${e.reason} (rollout status ${c.id}; rollout resume or cancel)`;
    case 'done': return `${what} done: ${e.reason}`;
  }
}

function describeLimit(l: Limit): string {
  return 'count' in l ? String(l.count) : `${l.percent}%`;
}

/** Above this many clients, progress is one summary line rather than a line per client. */
const PROGRESS_DETAIL_CLIENTS = 5;
const PROGRESS_EVERY_MS = 1000;
/** A device's comings and goings: at most a line each this often (quiet-lines.ts). */
const FLEET_LINES_EVERY_MS = 10_000;

/**
 * Push progress every second: per device (percent, rate, time left, resends) — on a terminal as
 * a bar — or, for many devices, one line for all of them; a multicast group's pass besides.
 */
function progressTicker(server: NxtServer, clock: Clock, show: (lines: string[]) => void, bars: boolean): NodeJS.Timeout {
  const last = new Map<number, { acked: number; at: number }>();
  return setInterval(() => {
    const now = clock.now();
    const sessions = server.activeSessions;
    if (sessions.length === 0) return;
    let totalRate = 0;
    let ackedBytes = 0;
    let totalBytes = 0;
    const lines: string[] = [];
    for (const s of sessions) {
      const p = s.progress;
      const prev = last.get(s.transferId) ?? { acked: 0, at: s.startedAt };
      // Each session has its own chunk size (chosen for its path).
      const rate = ((p.acked - prev.acked) * s.chunkSize) / Math.max(1, now - prev.at) * 1000;
      last.set(s.transferId, { acked: p.acked, at: now });
      const sizeBytes = s.release.manifest.size;
      const done = Math.min(sizeBytes, p.acked * s.chunkSize);
      totalRate += rate;
      ackedBytes += done;
      totalBytes += sizeBytes;
      const fraction = done / Math.max(1, sizeBytes);
      const left = rate > 0 ? ((sizeBytes - done) / rate) * 1000 : Number.NaN;
      const resent = p.retransmits > 0 ? `, ${p.retransmits} resent` : '';
      lines.push(p.phase === 'verifying' || p.phase === 'waiting'
        ? `  ${shortId(s.client.id)} ${bars ? `${bar(p.phase === 'waiting' ? 0 : 1)} ` : ''}${p.phase === 'waiting' ? 'waiting its turn (max rate)' : 'verifying'}`
        : `  ${shortId(s.client.id)} ${bars ? `${bar(fraction)} ` : ''}${Math.floor(100 * fraction)}% of ${size(sizeBytes)}, ${mib(rate)}/s, ${duration(left)} left${resent}`);
    }
    if (sessions.length > PROGRESS_DETAIL_CLIENTS) {
      const left = totalRate > 0 ? ((totalBytes - ackedBytes) / totalRate) * 1000 : Number.NaN;
      lines.length = 0;
      lines.push(`  ${sessions.length} clients in progress: ${bars ? `${bar(ackedBytes / totalBytes)} ` : ''}${Math.floor((100 * ackedBytes) / totalBytes)}%, ${mib(totalRate)}/s together, ${duration(left)} left`);
    }
    // A multicast push: the group's pass, and the devices it left to unicast by name.
    for (const g of server.groupPushes) {
      const st = g.status();
      const behind = st.unicastIds.map(shortId);
      lines.push(`  multicast: ${st.phase}${st.phase === 'sending' ? ` ${Math.floor((100 * st.sent) / st.total)}% at ${Math.round(st.mbit)} Mbit/s` : ''}`
        + `${behind.length > 0 ? `; by unicast: ${behind.slice(0, 10).join(', ')}${behind.length > 10 ? ` and ${behind.length - 10} more` : ''}` : ''}`);
    }
    show(lines);
  }, PROGRESS_EVERY_MS);
}

/**
 * Online clients named by a list like "all", "kiosks", "a1b2,c3d4,gateways": each item is `all`,
 * a group (a tag), or an id prefix that must name exactly one client.
 */
function pickClients(online: ClientRecord[], list: string, factsOf: (c: ClientRecord) => DeviceFacts): ClientRecord[] {
  const picked = new Set<ClientRecord>();
  for (const item of list.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    if (item === 'all') { for (const c of online) picked.add(c); continue; }
    const by = /^(channel|type):(.+)$/.exec(item);
    if (by) {
      const key = by[1] as 'channel' | 'type';
      const hits = online.filter((c) => factsOf(c)[key] === by[2]);
      if (hits.length === 0) throw new NxtError('no-such-client', `no online client has ${key} ${by[2]} (see: clients)`);
      for (const c of hits) picked.add(c);
      continue;
    }
    const group = online.filter((c) => c.tags.includes(item));
    if (group.length > 0) { for (const c of group) picked.add(c); continue; }
    const hits = online.filter((c) => c.id.startsWith(item.toLowerCase()));
    if (hits.length === 0) throw new NxtError('no-such-client', `"${item}" is neither a group with online clients nor the start of an online client's id (see: clients)`);
    if (hits.length > 1) throw new NxtError('ambiguous-client', `"${item}" names ${hits.length} clients: give more of the id`);
    picked.add(hits[0]!);
  }
  // "all" of nobody online is nobody (the caller says so); an empty list is a usage error.
  if (picked.size === 0 && !list.split(',').some((p) => p.trim() === 'all')) throw new NxtError('usage', '--to needs all, a group, or client ids');
  return [...picked];
}

/** One client known to the registry (online or not) by id prefix. */
function pickKnown(all: ClientRecord[], prefix: string | undefined, usage: string): ClientRecord {
  if (prefix === undefined || prefix === '') throw new NxtError('usage', `usage: ${usage}`);
  const hits = all.filter((c) => c.id.startsWith(prefix.toLowerCase()));
  if (hits.length === 0) throw new NxtError('no-such-client', `no client has an id starting "${prefix}" (see: clients)`);
  if (hits.length > 1) throw new NxtError('ambiguous-client', `"${prefix}" names ${hits.length} clients: give more of the id`);
  return hits[0]!;
}

const STATE_NAMES = ['idle', 'downloading', 'downloaded', 'updating'];
const RESULT_NAMES: Record<number, string> = { 0: 'initial', 1: 'success', 4: 'connection lost', 5: 'integrity failure', 8: 'update failed', 16: 'deferred', 17: 'refused' };

/** A client as scripts see it (`--json`). */
function clientJson(c: ClientRecord, online: boolean, device: DeviceRecord | undefined): DeviceView {
  return {
    id: c.id, address: displayAddress(c.peer), online, release: formatReleaseVersion(c.version),
    product: `${c.product.major}.${c.product.minor}`, productName: c.product.productName, lastSeen: c.lastSeenAt, tags: c.tags,
    updateState: STATE_NAMES[c.updateState] ?? String(c.updateState), updateResult: RESULT_NAMES[c.updateResult] ?? String(c.updateResult),
    type: device?.inventory.type, channel: device?.inventory.channel,
    inventory: device?.inventory ?? {}, fingerprint: device?.fingerprint,
    ...(c.node === undefined ? {} : { node: c.node }),
  };
}

/** "7d", "12h", "30m", "45s" or milliseconds. */
function parseDuration(text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(text);
  if (!m) throw new NxtError('usage', `"${text}" is not a duration (like 7d, 12h, 30m, 45s)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms']!;
  return Number(m[1]) * unit;
}

/** A status report as lines: its sections, sizes readable, the plugin's part as JSON. The
 *  device wrote it: its text is shown without controls (peer-text.ts). */
function describeReport(report: unknown): string[] {
  return reportLines(report).map(peerText);
}

function reportLines(report: unknown): string[] {
  if (typeof report !== 'object' || report === null) return [JSON.stringify(report)];
  const lines: string[] = [];
  for (const [key, value] of Object.entries(report as Record<string, unknown>)) {
    if (Array.isArray(value)) {
      lines.push(`${key}:${value.length === 0 ? ' none' : ''}`);
      for (const v of value) lines.push(`  ${String(v)}`);
    } else if (typeof value === 'object' && value !== null && key !== 'plugin') {
      lines.push(`${key}: ${Object.entries(value).map(([k, v]) => `${k} ${typeof v === 'number' && /Bytes$/.test(k) ? size(v) : String(v)}`).join(', ')}`);
    } else {
      lines.push(`${key}: ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`);
    }
  }
  return lines;
}

/** A job kind as the operator types it. */
const kindLabel = (kind: JobKindName): string => (kind === 'configRestore' ? 'config-restore' : kind);

function describeJob(j: Job): string {
  const outcome = j.state === 'done' || j.state === 'failed' ? `  ${j.result}${j.message ? `: ${j.message}` : ''}` : '';
  return `  ${String(j.id).padStart(4)}  ${shortId(j.device)}  ${kindLabel(j.kind).padEnd(6)} ${j.state.padEnd(6)} ${j.createdAt}${outcome}${j.file ? `  → ${j.file}` : ''}`;
}

/** Take a trailing --json flag off `args`. */
/** The one device an id prefix names, among `devices`. */
function pickDevice(devices: DeviceRecord[], prefix: string | undefined, usage: string): DeviceRecord {
  if (prefix === undefined || prefix === '') throw new NxtError('usage', `usage: ${usage}`);
  const hits = devices.filter((d) => d.id.startsWith(prefix.toLowerCase()));
  if (hits.length === 0) throw new NxtError('no-such-device', `no device has an id starting "${prefix}" (see: requests, clients)`);
  if (hits.length > 1) throw new NxtError('ambiguous-client', `"${prefix}" names ${hits.length} devices: give more of the id`);
  return hits[0]!;
}

/** Where a command runs: the console's defaults, or a ctl connection's. */
export interface CommandContext {
  /** Print each device's result as the push reports it (ctl: no background events to show them). */
  readonly reportEachClient?: boolean;
  /** Relative paths start here (ctl: the caller's directory); default: the server's. */
  readonly cwd?: string;
  /** Structured results for scripts (ctl); given, a push that failed on a device fails too. */
  readonly data?: (value: unknown) => void;
  /** Progress as a bar per device with rate and ETA (a terminal), not plain lines. */
  readonly bars?: boolean;
  /** Where progress goes (the console redraws it in place); default: printed as lines. */
  readonly progress?: (lines: string[]) => void;
  /** Files named must be under this folder (the HTTP API's uploads): RunContext.filesUnder. */
  readonly filesUnder?: string;
  /** The console's columns, for help (a terminal); default: 80. */
  readonly columns?: () => number;
}


/** The commands written once, with typed input and output, for the console, ctl and the API
 *  (typed-command.ts). The rest of the console's commands are in serverCommands. */
export function typedServerCommands(o: ServerReplOptions): Record<string, AnyTypedCommand> {
  const { server } = o;
  const view = (c: ClientRecord, online: boolean): DeviceView => clientJson(c, online, server.devices.get(c.id));
  /** A device's newest status report (the upload of its newest finished report job). */
  const latestReport = (device: string): { report: unknown; job: number; at: string } | undefined => {
    const done = o.jobs?.store.listFor(device).filter((j) => j.kind === 'report' && j.file !== undefined) ?? [];
    for (const j of done.reverse()) {
      try {
        // Reports stored before they were limited may be larger: those are left unread.
        if (statSync(j.file!).size > MAX_REPORT_BYTES) continue;
        return { report: JSON.parse(readFileSync(j.file!, 'utf8')) as unknown, job: j.id, at: j.updatedAt };
      } catch { /* removed or damaged: an older one */ }
    }
    return undefined;
  };
  const noArguments = (usage: string) => (words: string[]): Record<string, never> => {
    if (words.length > 0) throw new NxtError('usage', `usage: ${usage}`);
    return {};
  };
  const tagCommand = (on: boolean): TypedCommand<{ device: string; group: string }, { device: string; group: string; changed: boolean; tags: readonly string[] }> => {
    const usage = `${on ? 'tag' : 'untag'} <ID> <group>`;
    return {
      usage,
      help: on ? 'put a client in a group (push --to <group> then reaches it); kept across restarts' : 'take a client out of a group',
      input: schema.object({ device: schema.string({ minLength: 1 }), group: schema.string({ pattern: '^[\\w.-]+$' }) }, ['device', 'group']),
      parse: (words) => {
        if (words.length !== 2) throw new NxtError('usage', `usage: ${usage}${on ? ' (a group is letters, digits, . _ -; not "all")' : ''}`);
        return { device: words[0]!, group: words[1]! };
      },
      run: async ({ device, group }) => {
        if (on && (!/^[\w.-]+$/.test(group) || group === 'all')) throw new NxtError('usage', `usage: ${usage} (a group is letters, digits, . _ -; not "all")`);
        const c = pickKnown(server.fleetKnown(), device, usage);
        const changed = await server.setTag(c.id, group, on);
        return { device: c.id, group, changed, tags: [...c.tags] };
      },
      print: (r) => [on
        ? (r.changed ? `${shortId(r.device)} is in ${r.group}: ${r.tags.join(', ')}` : `${shortId(r.device)} was already in ${r.group}`)
        : (r.changed ? `${shortId(r.device)} left ${r.group}` : `${shortId(r.device)} was not in ${r.group}`)],
    };
  };

  const clients: TypedCommand<{ where: string[] }, DeviceView[]> = {
    usage: 'clients [--json] [--where FIELD<VALUE,…]',
    help: 'the fleet: id, hostname, type, channel, address, release, product version, online/offline, last seen, update state, groups; '
      + '--where keeps the devices whose latest status report matches (e.g. disk.dataFreeBytes<1GiB, updateState=0, module.release!=2.0.0)',
    input: schema.object({ where: schema.strings() }),
    parse: (words) => {
      const { rest, values } = takeRepeated(words, 'where');
      if (rest.length > 0) throw new NxtError('usage', 'usage: clients [--json] [--where FIELD<VALUE,…]');
      return { where: values };
    },
    run: ({ where }) => {
      const now = o.clock.now();
      const conditions = where.flatMap(parseWhere);
      return server.fleetKnown()
        .filter((c) => conditions.length === 0 || matchesWhere(latestReport(c.id)?.report, conditions))
        .map((c) => view(c, server.registry.isOnline(c, now)));
    },
    print: (devices) => {
      if (devices.length === 0) return [server.registry.size === 0 && server.fleetKnown().length === 0 ? 'no clients registered' : 'no clients match'];
      const nodes = server.nodeName !== undefined;
      const now = o.wallClock.wallNow().getTime();
      const rows = devices.map((d) => [
        shortId(d.id), inventoryText(d.inventory, 'hostname'), d.type ?? '-', d.channel ?? '-', d.address, d.release,
        `${d.product} ${d.productName}`, d.online ? 'online' : 'offline', lastSeenText(d.lastSeen, now),
        d.updateState !== STATE_NAMES[0] || d.updateResult !== RESULT_NAMES[0] ? `${d.updateState}${d.updateResult !== RESULT_NAMES[0] ? ` (${d.updateResult})` : ''}` : '-',
        d.tags.join(',') || '-',
        ...(nodes ? [d.node ?? server.nodeName!] : []),
      ]);
      return table(['ID', 'HOSTNAME', 'TYPE', 'CHANNEL', 'ADDRESS', 'RELEASE', 'PRODUCT', 'STATE', 'LAST SEEN', 'UPDATE', 'GROUPS', ...(nodes ? ['NODE'] : [])], rows);
    },
  };

  const nodes: TypedCommand<Record<string, never>, { name: string; address: string; devices: number }[]> = {
    usage: 'nodes [--json]',
    help: 'the server nodes serving this fleet (several nodes on one PostgreSQL): name, number, address, devices each holds',
    input: schema.object({}),
    parse: noArguments('nodes [--json]'),
    run: () => {
      const here = server.nodeName;
      if (here === undefined) return [];
      const fleet = server.fleetKnown();
      const held = (node: string): number => fleet.filter((c) => (c.node ?? here) === node).length;
      return [{ name: here, address: 'this node', devices: server.registry.all().length }, ...server.otherNodes().map((n) => ({ name: n.name, address: n.address, devices: held(n.name) }))];
    },
    print: (list) => (list.length === 0
      ? ['this server runs alone (several nodes share a PostgreSQL database: --database postgres://…)']
      : table(['NODE', 'ADDRESS', 'DEVICES'], list.map((n) => [n.name, n.address, String(n.devices)]))),
  };

  const requests: TypedCommand<Record<string, never>, RequestView[]> = {
    usage: 'requests [--json]',
    help: 'devices waiting for approval, and rejected or revoked ones: id, key fingerprint, what they say they are',
    input: schema.object({}),
    parse: noArguments('requests [--json]'),
    run: () => server.devices.all().filter((d): d is DeviceRecord & { state: RequestView['state'] } => d.state !== 'approved')
      .map((d) => ({ id: d.id, state: d.state, address: d.address, fingerprint: d.fingerprint, inventory: d.inventory, requestedAt: d.requestedAt })),
    print: (devices) => (devices.length === 0 ? ['no enrollment requests']
      : table(['ID', 'STATE', 'ADDRESS', 'KEY', 'DEVICE', 'ASKED'], devices.map((d) => [shortId(d.id), d.state, d.address, d.fingerprint, describeInventory(d.inventory), d.requestedAt]))),
  };

  const versions: TypedCommand<Record<string, never>, (DeviceView & { answered: boolean })[]> = {
    usage: 'versions [--json]',
    help: 'ask every online client for its version now and list the answers (a client that does not answer within 3 s shows its last known one)',
    input: schema.object({}),
    parse: noArguments('versions [--json]'),
    run: async () => (await server.queryVersions()).map((a) => ({ ...view(a.client, true), answered: a.answered })),
    print: (answers) => (answers.length === 0 ? ['no clients online'] : answers.map((d) => `  ${shortId(d.id)}  release ${d.release.padEnd(8)} ${d.product} ${d.productName}  `
      + `${d.updateState}${d.updateResult !== RESULT_NAMES[0] ? ` (${d.updateResult})` : ''}${d.answered ? '' : '  (no answer: last known)'}`)),
  };

  /** The newest `last` of `list` (oldest first, as they were queued), saying how many are left out. */
  const newest = (list: Job[], last: number, say: (line: string) => void, what: string): Job[] => {
    if (list.length > last) say(`${list.length - last} older ${what} not shown (--last N shows more)`);
    return list.slice(-last);
  };
  /** `--last N` of a listing command, `fallback` without it. */
  const lastOption = (options: Record<string, string | undefined>, fallback: number): number => {
    const last = options.last === undefined ? fallback : Number(options.last);
    if (!Number.isInteger(last) || last < 1) throw new NxtError('usage', '--last takes a positive whole number');
    return last;
  };

  const jobs: TypedCommand<{ target?: string; last: number }, Job[]> = {
    usage: 'jobs [ID|GROUP] [--last N] [--json]',
    help: 'maintenance jobs, queued, sent, done and failed (for one device or group), the newest 50 or N',
    input: schema.object({ target: schema.string({ minLength: 1 }), last: { ...schema.positive(), default: 50 } }),
    parse: (words) => {
      const { positional, options } = takeOptions(words, ['last']);
      if (positional.length > 1) throw new NxtError('usage', 'usage: jobs [ID|GROUP] [--last N] [--json]');
      return { ...(positional[0] === undefined ? {} : { target: positional[0] }), last: lastOption(options, 50) };
    },
    run: ({ target, last }, { say }) => {
      const members = target === undefined ? undefined : new Set(server.fleetKnown().filter((c) => c.tags.includes(target) || c.id.startsWith(target.toLowerCase())).map((c) => c.id));
      return newest(o.jobs?.store.list((j) => !members || members.has(j.device)) ?? [], last, say, 'jobs');
    },
    print: (list) => (list.length === 0 ? ['no jobs'] : list.map(describeJob)),
  };

  const results: TypedCommand<{ job?: number; last: number }, Job[]> = {
    usage: 'results [JOB] [--last N] [--json]',
    help: 'finished jobs with their result (ok, invalid job, file does not exist, generation failed, transfer failed) and uploaded file, the newest 20 or N',
    input: schema.object({ job: schema.positive(), last: { ...schema.positive(), default: 20 } }),
    parse: (words) => {
      const { positional, options } = takeOptions(words, ['last']);
      const id = positional[0] === undefined ? undefined : Number(positional[0]);
      if (positional.length > 1 || (id !== undefined && !Number.isInteger(id))) throw new NxtError('usage', 'usage: results [JOB] [--last N] (a job number)');
      return { ...(id === undefined ? {} : { job: id }), last: lastOption(options, 20) };
    },
    run: ({ job, last }, { say }) => newest(o.jobs?.store.list((j) => (j.state === 'done' || j.state === 'failed') && (job === undefined || j.id === job)) ?? [], last, say, 'results'),
    print: (list) => (list.length === 0 ? ['no finished jobs (see: jobs)'] : list.map(describeJob)),
  };

  type Progress = { client: string; module: string; release: string } & NxtServer['activeSessions'][number]['progress'];
  const status: TypedCommand<Record<string, never>, Progress[]> = {
    usage: 'status [--json]',
    help: 'pushes in progress, with each client\'s progress',
    input: schema.object({}),
    parse: noArguments('status [--json]'),
    run: () => server.activeSessions.map((p) => ({ client: p.client.id, module: p.release.manifest.name, release: formatReleaseVersion(p.release.manifest.version), ...p.progress })),
    print: (rows) => [
      ...(rows.length === 0 ? ['no pushes in progress'] : rows.map((r) => `  ${shortId(r.client)}  ${r.module} ${r.release}  ${r.phase} ${r.acked}/${r.total} chunks `
        + `(${Math.floor((100 * r.acked) / r.total)}%), ${r.retransmits} resent, ${r.timeouts} retransmission timeouts`)),
      ...(server.maxRate?.limited ? [describeMaxRate(server.maxRate)] : []),
    ],
  };

  const report: TypedCommand<{ device: string }, { device: string; job: number; at: string; report: unknown }> = {
    usage: 'report <ID> [--json]',
    help: 'the latest status and error report a device sent (job report): its module, update state, free space, memory, last warnings, counters, and its plugin\'s own part',
    input: schema.object({ device: schema.string({ minLength: 1 }) }, ['device']),
    parse: (words) => {
      if (words.length !== 1) throw new NxtError('usage', 'usage: report <ID> [--json]');
      return { device: words[0]! };
    },
    run: ({ device }) => {
      const client = pickKnown(server.registry.all(), device, 'report <ID> [--json]');
      const latest = latestReport(client.id);
      if (!latest) throw new NxtError('no-report', `${shortId(client.id)} has sent no status report yet: job report ${shortId(client.id)}`);
      return { device: client.id, ...latest };
    },
    print: (r) => [`report from ${shortId(r.device)} (job ${r.job}, ${r.at}):`, ...describeReport(r.report).map((l) => `  ${l}`)],
    json: (r) => r.report,
  };

  const history: TypedCommand<{ device?: string; last: number }, Awaited<ReturnType<History['list']>>> = {
    usage: 'history [ID] [--last N] [--json]',
    help: 'push results, oldest first (kept across restarts); for one client with an id prefix',
    input: schema.object({ device: schema.string({ minLength: 1 }), last: { ...schema.positive(), default: 20 } }),
    parse: (words) => {
      const { positional, options } = takeOptions(words, ['last']);
      if (positional.length > 1) throw new NxtError('usage', 'usage: history [ID] [--last N]');
      return { ...(positional[0] === undefined ? {} : { device: positional[0] }), last: lastOption(options, 20) };
    },
    run: ({ device, last }) => o.history.list(device, last),
    print: (entries) => (entries.length === 0 ? ['no push results recorded'] : entries.map((e) => `  ${e.at}  ${shortId(e.client)}  ${e.module} ${e.version}  `
      + `${e.result}${e.result === 'ok' ? '' : `: ${e.message}`}  (${Math.round(e.elapsedMs)} ms, ${e.resent} resent)`)),
  };

  type ReleaseView = ReleaseSummary & { size?: number; signed?: string; for?: Compatibility };
  const releases: TypedCommand<Record<string, never>, ReleaseView[]> = {
    usage: 'releases [--json]',
    help: 'every module pushed (summarised from the history as results arrive, forgotten entries too): version, first and last push, devices it was installed on, failures; size, signer and what it is for',
    input: schema.object({}),
    parse: noArguments('releases [--json]'),
    run: async () => {
      // What the history's summaries say, with what the server keeps of each: its size, who
      // signed it (this server when pushed, or offline), what it is for.
      await o.releases.settled(); // the copy of a release just pushed
      const stored = o.releases.list();
      return (await o.history.releases()).map((r) => {
        const kept = stored.find((x) => x.sha256 === r.sha256 && formatReleaseVersion(x.version) === r.version);
        return kept ? { ...r, size: kept.size, signed: kept.presigned ? 'offline' : 'by the server', for: kept.for } : r;
      });
    },
    print: (list) => (list.length === 0 ? ['nothing pushed yet'] : list.map((r) => {
      const extra = r.size !== undefined ? `  ${size(r.size)}, signed ${r.signed}${r.for ? `, for ${describeCompatibility(r.for)}` : ''}` : '  not kept here (removed, or stored by another node)';
      return `  ${r.module} ${r.version}  sha256 ${r.sha256.slice(0, 12)}…  first ${r.firstPushed}, last ${r.lastPushed}  installed on ${r.installedOn}, ${r.failures} failed${extra}`;
    })),
  };

  const removeRelease: TypedCommand<{ release: string }, { name: string; version: string; sha256: string }> = {
    usage: 'remove-release <NAME|X.Y.Z|SHA256>',
    help: 'forget a stored release (one pushed by mistake, or no longer wanted): rollout latest, automatic updates and new campaigns no longer see it and its copies are deleted; devices that run it keep it',
    input: schema.object({ release: schema.string({ minLength: 1 }) }, ['release']),
    parse: (words) => {
      if (words.length !== 1) throw new NxtError('usage', 'usage: remove-release <NAME|X.Y.Z|SHA256> (releases lists them)');
      return { release: words[0]! };
    },
    run: async ({ release: what }) => {
      const hex = /^[0-9a-f]{8,64}$/i.test(what) ? what.toLowerCase() : undefined;
      // With several nodes, also one only another node stored.
      const hits = (await o.releases.everywhere()).filter((r) => r.name === what || formatReleaseVersion(r.version) === what || (hex !== undefined && r.sha256.startsWith(hex)));
      if (hits.length === 0) throw new NxtError('no-such-release', `no stored release "${what}" (releases lists them)`);
      if (hits.length > 1) {
        throw new NxtError('ambiguous-release', `"${what}" names ${hits.length} stored releases (${hits.map((r) => `${describeStored(r)} ${r.sha256.slice(0, 12)}`).join(', ')}): give the sha256`);
      }
      const r = hits[0]!;
      await server.removeRelease(r);
      return { name: r.name, version: formatReleaseVersion(r.version), sha256: r.sha256 };
    },
    print: (r) => [`removed ${r.name} ${r.version} (sha256 ${r.sha256.slice(0, 12)}…): rollout latest, automatic updates and new campaigns no longer offer it; devices that run it keep it`],
  };

  const factsOf = (c: ClientRecord): DeviceFacts => server.factsOf(c);
  const pushUsage = 'push <file> [--version X.Y.Z] [--to all|GROUP|ID|channel:C|type:T[,…]] [--for type=T|product=P|arch=A|channel=C|agent=RANGE …]';
  /** `release` to those of the `named` devices it is for. */
  const pushTo = async (named: ClientRecord[], release: Release, rc: RunContext): Promise<PushOutput> => {
    // A release for other kinds of device is not sent to them (they would refuse it).
    const clients = named.filter((c) => {
      const why = mismatch(release.manifest.for, factsOf(c));
      if (why !== undefined) rc.say(`  ${shortId(c.id)} skipped: not for this device (${why})`);
      return why === undefined;
    });
    if (clients.length === 0 && named.length > 0) {
      throw new NxtError('no-clients', `push: ${release.manifest.name} is for ${describeCompatibility(release.manifest.for)}: none of the ${named.length} online client(s) named is; nothing sent`);
    }
    if (clients.length === 0) {
      const known = server.fleetKnown().length;
      // Nothing delivered is not "done": a script must not go on as if it were.
      throw new NxtError('no-clients', known === 0
        ? 'push: no clients are registered; nothing sent (start a client, then push again)'
        : `push: none of the ${known} registered clients is online (no renewal within the lease); nothing sent`);
    }
    return pushRelease(o, release, clients, rc);
  };

  const push: TypedCommand<{ file: string; version?: string; to?: string; for: string[] }, PushOutput> = {
    usage: pushUsage,
    help: 'sign a plugin module (or use its .nxt-signed file) and send it to every online client, or to those named (groups, id prefixes, channels, device types); '
      + '--for signs into it what it is for: devices it is not for are skipped, and refuse it',
    input: schema.object({
      file: schema.string({ minLength: 1, description: 'the module on the server (an upload\'s "file")' }), version: schema.string({ pattern: '^\\d+\\.\\d+(\\.\\d+)?$' }),
      to: schema.string({ minLength: 1 }), for: schema.strings(),
    }, ['file']),
    background: true,
    reportsData: true,
    parse: (words) => {
      const { rest: unforked, values: forFlags } = takeRepeated(words, 'for');
      const { positional, options } = takeOptions(unforked, ['version', 'to']);
      const [file, extra] = positional;
      if (file === undefined || extra !== undefined) throw new NxtError('usage', 'usage: push <file> [--version X.Y.Z] [--to all|GROUP|ID[,…]] [--for KEY=VALUE …]');
      return { file, for: forFlags, ...(options.version === undefined ? {} : { version: options.version }), ...(options.to === undefined ? {} : { to: options.to }) };
    },
    run: async (input, rc) => {
      const compatibility = parseFor(input.for);
      const online = server.fleetOnline();
      const named = input.to === undefined ? online : pickClients(online, input.to, factsOf);
      const file = callerFile(rc, input.file);
      // Sealed while it is hashed and signed; what the push does not take is let go after it.
      server.sealEarly(file, named);
      try {
        return await pushTo(named, await prepareRelease(file, {
          version: input.version, signer: o.signer, publicKey: o.publicKey, now: o.wallClock.wallNow(), ttlSeconds: o.manifestTtlSeconds, for: compatibility,
        }), rc);
      } finally {
        server.dropEarly(file);
      }
    },
    print: (r, rc) => [
      // The console prints each result as it comes (server events); a ctl caller gets them here.
      ...(rc.live ? [] : r.devices.map((d) => `  ${shortId(d.id)} ${d.address}  ${d.said}`)),
      `push finished: ${r.done} done, ${r.failed} failed${r.deferred > 0 ? `, ${r.deferred} deferred` : ''}${r.already > 0 ? `, ${r.already} already installed` : ''}`,
    ],
    failure: (r) => (r.failed > 0 ? new NxtError('push-failed', `the push failed on ${r.failed} of ${r.devices.length} device(s)`) : undefined),
  };

  type Decision = { device: string; state: Exclude<DeviceState, 'pending'>; changed: boolean; inventory: DeviceRecord['inventory'] };
  const decision = (name: string, state: Decision['state'], help: string): TypedCommand<{ device: string }, Decision> => ({
    usage: `${name} <ID>`,
    help,
    input: schema.object({ device: schema.string({ minLength: 1 }) }, ['device']),
    parse: (words) => {
      if (words.length !== 1) throw new NxtError('usage', `usage: ${name} <ID>`);
      return { device: words[0]! };
    },
    run: async ({ device }) => {
      const d = pickDevice(server.devices.all(), device, `${name} <ID>`);
      const changed = d.state !== state;
      if (changed) await server.decide(d.id, state);
      return { device: d.id, state, changed, inventory: d.inventory };
    },
    print: (r) => [r.changed ? `${shortId(r.device)} ${r.state} (${describeInventory(r.inventory)})` : `${shortId(r.device)} is already ${r.state}`],
  });

  const cancel: TypedCommand<{ devices?: string[] }, { cancelled: string[] }> = {
    usage: 'cancel [ID[,…]]',
    help: 'stop the pushes in progress (to the clients named by id prefix, or all): the devices keep what arrived, to resume',
    input: schema.object({ devices: { type: 'array', items: { type: 'string', minLength: 1 } } }),
    parse: (words) => {
      if (words.length > 1) throw new NxtError('usage', 'usage: cancel [ID[,…]]');
      return words[0] === undefined ? {} : { devices: words[0].split(',').filter((p) => p !== '') };
    },
    run: ({ devices }) => {
      const sessions = server.activeSessions.filter((s) => !devices || devices.some((p) => s.client.id.startsWith(p.toLowerCase())));
      for (const s of sessions) s.cancel('cancelled by the operator');
      return { cancelled: sessions.map((s) => s.client.id) };
    },
    print: ({ cancelled }) => [cancelled.length === 0 ? 'cancel: no push in progress'
      : `cancelled ${cancelled.length} push${cancelled.length === 1 ? '' : 'es'} in progress: ${cancelled.map(shortId).join(', ')}`],
  };

  /** `rollout`: staged campaigns (start, status, pause, resume, cancel), and `latest`, a push of
   *  the newest release to every online device behind it. */
  const rollout: TypedCommand<RolloutInput, RolloutOutput> = {
    usage: 'rollout start|status|pause|resume|cancel|latest …',
    help: 'staged campaigns, and the newest release to every device behind it:\n'
      + 'rollout start <release> [--to GROUP] [--stages 1,10%,50%,100%] [--success 95%] [--max-failures N|P%] [--window HH:MM-HH:MM]: '
      + 'sends a release (a stored name, X.Y.Z, latest, or a module file) in stages, each begun once enough devices so far committed it, pausing by itself on failures\n'
      + 'rollout status|pause|resume|cancel [ID]\n'
      + 'rollout latest: pushes the newest release to every online client behind it, at once',
    input: schema.object({
      action: { type: 'string', enum: ['start', 'status', 'pause', 'resume', 'cancel', 'latest'] },
      id: schema.string({ minLength: 1 }), release: schema.string({ minLength: 1 }), to: schema.string({ minLength: 1 }),
      stages: schema.string(), success: schema.string(), maxFailures: schema.string(), window: schema.string(), for: schema.strings(),
    }, ['action']),
    background: (words) => words[0] === 'latest',
    reportsData: true,
    parse: (words) => {
      const [action, ...rest] = words;
      const usage = 'usage: rollout start <release> [options] | status|pause|resume|cancel [ID] | latest';
      switch (action) {
        case 'latest':
          if (rest.length !== 0) throw new NxtError('usage', 'usage: rollout latest');
          return { action, for: [] };
        case 'start': {
          const { rest: unforked, values } = takeRepeated(rest, 'for');
          const { positional, options } = takeOptions(unforked, ['to', 'stages', 'success', 'max-failures', 'window']);
          if (positional.length !== 1) throw new NxtError('usage', 'usage: rollout start <release> [--to GROUP] [--stages 1,10%,50%,100%] [--success 95%] [--max-failures N|P%] [--window HH:MM-HH:MM] [--for KEY=VALUE …]');
          const given = { to: options.to, stages: options.stages, success: options.success, maxFailures: options['max-failures'], window: options.window };
          return { action, release: positional[0]!, for: values, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) };
        }
        case 'status': case 'pause': case 'resume': case 'cancel':
          if (rest.length > 1) throw new NxtError('usage', `usage: rollout ${action} [ID]`);
          return { action, for: [], ...(rest[0] === undefined ? {} : { id: rest[0] }) };
        default:
          throw new NxtError('usage', usage);
      }
    },
    run: async (input, rc) => {
      const { action } = input;
      if (action === 'latest') {
        await o.releases.refresh();
        const latest = o.releases.latest();
        if (!latest) return { action, campaigns: [], message: 'rollout: nothing has been pushed yet, so there is no latest release' };
        const behind = server.behind(latest);
        if (behind.length === 0) return { action, campaigns: [], message: `rollout: every online client runs ${describeStored(latest)} or newer; nothing sent` };
        return { action, campaigns: [], push: await pushRelease(o, await o.prepareStored(latest), behind, rc) };
      }
      const rollouts = o.rollouts;
      if (!rollouts) throw new NxtError('usage', 'rollout campaigns need a state dir');
      if (action === 'start') return { action, campaigns: [campaignView(await startCampaign(rollouts, input, rc))] };
      if (action === 'status') return { action, campaigns: (input.id === undefined ? rollouts.list() : [rollouts.find(input.id)]).map(campaignView), one: input.id !== undefined };
      const c = rollouts.find(input.id);
      await rollouts.change(c, action);
      return { action, campaigns: [campaignView(c)] };
    },
    print: (r, rc) => {
      if (r.message !== undefined) return [r.message];
      if (r.push) return push.print(r.push, rc);
      if (r.action === 'start') return [describeStart(r.campaigns[0]!)];
      if (r.campaigns.length === 0) return ['no rollout campaigns'];
      return r.campaigns.map((c) => describeCampaign(c, r.action === 'status' && (r.one === true || r.campaigns.length === 1)));
    },
    // `rollout status --json` prints the campaigns as they are (what scripts and the dashboard
    // read); `rollout latest` gives ctl's data what a push gives.
    json: (r) => (r.action === 'status' ? r.campaigns : r.push ?? r),
    failure: (r) => (r.push ? push.failure!(r.push) : undefined),
  };

  /** `rollout start`: which release, to whom, in which stages. */
  const startCampaign = async (rollouts: Rollouts, input: RolloutInput, rc: RunContext): Promise<Campaign> => {
    if (input.release === undefined) throw new NxtError('usage', 'rollout start needs the release (a stored name, X.Y.Z, latest, or a module file)');
    const stored = await findRelease(input.release, rc, input.for.length > 0 ? parseFor(input.for) : undefined);
    const target = input.to ?? 'all';
    const all = server.fleetKnown();
    const named = target === 'all' ? all : all.filter((c) => c.tags.includes(target));
    if (named.length === 0) throw new NxtError('no-such-client', target === 'all' ? 'no clients are registered' : `no client is in group "${target}" (tag adds one)`);
    // The campaign is for the devices the release is for; the others are named and left out.
    const members = named.filter((c) => mismatch(stored.for, factsOf(c)) === undefined);
    const left = named.length - members.length;
    if (left > 0) rc.say(`rollout: ${describeStored(stored)} is for ${describeCompatibility(stored.for)}: ${left} device(s) left out (not for them)`);
    if (members.length === 0) throw new NxtError('no-such-client', `none of the ${named.length} device(s) named is one ${describeStored(stored)} is for`);
    // Online devices first: the first stages should not wait for one that is away.
    const now = o.clock.now();
    const ordered = [...members].sort((a, b) => Number(server.registry.isOnline(b, now)) - Number(server.registry.isOnline(a, now)) || a.id.localeCompare(b.id));
    const spec: CampaignSpec = {
      release: { name: stored.name, version: formatReleaseVersion(stored.version), sha256: stored.sha256 },
      target,
      stages: input.stages === undefined ? DEFAULT_STAGES : parseStages(input.stages),
      successPercent: input.success === undefined ? DEFAULT_SUCCESS_PERCENT : parsePercent('--success', input.success),
      maxFailures: input.maxFailures === undefined ? DEFAULT_MAX_FAILURES : parseLimit('--max-failures', input.maxFailures),
      ...(input.window === undefined ? {} : { window: parseWindow(input.window) }),
    };
    return rollouts.start(spec, ordered.map((m) => m.id));
  };
  /** A stored release by name (its newest), X.Y.Z, or "latest"; or a module file, signed and stored. */
  const findRelease = async (what: string, rc: RunContext, compatibility?: Compatibility): Promise<StoredRelease> => {
    // With several nodes, one another node stored since this one looked counts too.
    await o.releases.refresh();
    const list = o.releases.list();
    if (what === 'latest') {
      const latest = o.releases.latest();
      if (!latest) throw new NxtError('no-such-release', 'nothing has been pushed or stored yet');
      return latest;
    }
    const byVersion = /^\d+\.\d+\.\d+$/.test(what) ? list.filter((r) => formatReleaseVersion(r.version) === what) : [];
    const byName = list.filter((r) => r.name === what);
    const found = [...byVersion, ...byName].sort((a, b) => compareReleaseVersions(b.version, a.version))[0];
    if (found) {
      if (compatibility !== undefined) throw new NxtError('usage', `${describeStored(found)} is stored already, signed for ${describeCompatibility(found.for)}: --for applies to a module file`);
      return found;
    }
    if (!existsSync(resolve(rc.cwd ?? process.cwd(), what))) throw new NxtError('no-such-release', `no stored release "${what}" and no such file (releases lists the stored ones)`);
    const file = callerFile(rc, what);
    const release = await prepareRelease(file, { signer: o.signer, publicKey: o.publicKey, now: o.wallClock.wallNow(), ttlSeconds: o.manifestTtlSeconds, for: compatibility });
    return o.releases.add(release, o.wallClock.wallNow());
  };

  /** `job`: a maintenance job for each device named, run when it polls. */
  const job: TypedCommand<JobInput, { jobs: { id: number; device: string; kind: JobKindName }[] }> = {
    usage: 'job logs|backup|put|clean|config|config-restore|install|report <all|GROUP|ID> …',
    help: 'queue a maintenance job for each device T names (all, a group, an id); it runs when the device polls (maintenance mode):\n'
      + 'job logs T [--since TIME] [--until TIME] [--severity S] [--grep RE] [--file NAME]\n'
      + 'job backup T <config-name>\n'
      + 'job put T <local-file> <remote-name> [--mkdir] (--mkdir makes the folders)\n'
      + 'job clean T <logs|config|dropbox[/dir]> [--older-than 7d]\n'
      + 'job config T <local-file> <config-name> [--apply] (into the config root, the old one kept; --apply: the plugin takes it or it is put back)\n'
      + 'job config-restore T <config-name> [--apply]\n'
      + 'job install T <local-file> --with NAME (the device runs its own configured installer NAME on the file, e.g. deb: apt-get install -y {file})\n'
      + 'job report T (the device\'s status and error report: see report ID)',
    input: schema.object({
      kind: { type: 'string', enum: ['logs', 'backup', 'put', 'clean', 'config', 'configRestore', 'install', 'report'] },
      target: schema.string({ minLength: 1 }),
      source: schema.string({ minLength: 1 }), name: schema.string({ minLength: 1 }), dir: schema.string({ minLength: 1 }),
      since: schema.string(), until: schema.string(), severity: schema.string(), grep: schema.string(), logFile: schema.string({ minLength: 1 }),
      olderThan: schema.string(), installer: schema.string(), mkdir: { type: 'boolean' }, apply: { type: 'boolean' },
    }, ['kind', 'target']),
    parse: (words) => parseJob(words),
    run: async (input, rc) => {
      const jobs = o.jobs;
      if (!jobs) throw new NxtError('usage', 'this server has no job queue');
      const { kind, target } = input;
      const typed = kindLabel(kind);
      const need = (value: string | undefined, what: string): string => {
        if (value === undefined) throw new NxtError('usage', `job ${typed} needs ${what} (help job)`);
        return value;
      };
      // Names are checked here as the device will check them: a bad one is refused now, not
      // after the device polled.
      const checked = (what: () => unknown): void => {
        try { what(); } catch (err) { if (err instanceof InvalidJob) throw new NxtError('usage', err.message); throw err; }
      };
      /** A local file the device is to receive: its copy here, named by content (the file may
       *  change or go away before the device polls). */
      const stage = async (name: string): Promise<{ source: string; size: number; sha256: string }> => {
        const file = callerFile(rc, name);
        if (!existsSync(file) || !statSync(file).isFile()) throw new NxtError('no-such-file', `${name} is not a file`);
        const sha256 = await hashFile(file);
        const dir = join(jobs.stateDir, 'put');
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const copy = join(dir, sha256);
        // Touched if it is there already: an unneeded copy untouched for a while is deleted
        // (job-files.ts), and this one is needed again.
        if (existsSync(copy)) utimesSync(copy, new Date(), new Date());
        else copyFileSync(file, copy);
        return { source: copy, size: statSync(copy).size, sha256 };
      };
      const fleet = server.fleetKnown();
      const devices = target === 'all' ? fleet
        : fleet.some((c) => c.tags.includes(target)) ? fleet.filter((c) => c.tags.includes(target))
          : [pickKnown(fleet, target, 'job <kind> <target> …')];
      if (devices.length === 0) throw new NxtError('no-such-client', 'no clients to run it on');
      let params: Record<string, unknown>;
      let source: string | undefined;
      switch (kind) {
        case 'logs': {
          for (const t of ['since', 'until'] as const) if (input[t] !== undefined && Number.isNaN(Date.parse(input[t]!))) throw new NxtError('usage', `--${t} "${input[t]}" is not a time (like 2026-11-23T10:00:00Z)`);
          if (input.severity !== undefined && severityRank(input.severity) < 0) throw new NxtError('usage', `unknown severity "${input.severity}" (debug, info, notice, warning, error, critical, alert, emergency)`);
          if (input.grep !== undefined) { try { boundedRegExp(input.grep); } catch (err) { throw new NxtError('usage', `--grep "${input.grep}": ${errorMessage(err)}`); } }
          if (input.logFile !== undefined) checked(() => checkName(input.logFile!));
          params = { since: input.since, until: input.until, severity: input.severity, grep: input.grep, file: input.logFile };
          break;
        }
        case 'backup': {
          const name = need(input.name, 'the config file\'s name');
          checked(() => checkName(name));
          params = { name };
          break;
        }
        case 'put': {
          const name = need(input.name, 'the name to write it as');
          checked(() => checkName(name));
          const staged = await stage(need(input.source, 'the local file to send'));
          source = staged.source;
          params = { name, size: staged.size, sha256: staged.sha256, ...(input.mkdir ? { mkdir: true } : {}) };
          break;
        }
        case 'config': {
          const name = need(input.name, 'the config file\'s name');
          checked(() => checkName(name));
          if (name.endsWith('.previous')) throw new NxtError('usage', `"${name}": names ending .previous hold the kept versions`);
          const staged = await stage(need(input.source, 'the local file to send'));
          source = staged.source;
          params = { name, size: staged.size, sha256: staged.sha256, apply: input.apply === true };
          break;
        }
        case 'configRestore': {
          const name = need(input.name, 'the config file\'s name');
          checked(() => checkName(name));
          params = { name, apply: input.apply === true };
          break;
        }
        case 'report':
          params = {};
          break;
        case 'install': {
          const using = need(input.installer, 'the installer (--with NAME: one the device\'s config names: deb, swu, …)');
          if (!/^[a-z0-9_-]{1,32}$/.test(using)) throw new NxtError('usage', `--with "${using}": an installer's name (a-z, 0-9, _, -)`);
          const file = need(input.source, 'the local file to install');
          const staged = await stage(file);
          source = staged.source;
          params = { name: basename(file), size: staged.size, sha256: staged.sha256, with: using };
          break;
        }
        case 'clean': {
          const dir = need(input.dir, 'the folder (logs, config or dropbox[/dir])');
          checked(() => splitRootDir(dir));
          params = { dir, olderThanMs: input.olderThan === undefined ? undefined : parseDuration(input.olderThan) };
          break;
        }
      }
      // Several nodes: the file goes into the database before any job is queued, for whichever
      // node holds the device when it polls (another node now, or later if this one dies).
      if (source !== undefined && jobs.share) await jobs.share(String(params.sha256), source, Number(params.size));
      else if (source !== undefined && devices.some((d) => d.node !== undefined)) {
        throw new NxtError('held-elsewhere', 'a job that sends a file to a device another node holds needs the nodes\' database');
      }
      const queued: { id: number; device: string; kind: JobKindName }[] = [];
      for (const d of devices) {
        const j = await jobs.store.add(d.id, kind, JSON.parse(JSON.stringify(params)) as Record<string, unknown>, o.wallClock.wallNow(), source);
        queued.push({ id: j.id, device: d.id, kind });
      }
      return { jobs: queued };
    },
    print: (r) => r.jobs.map((j) => `job ${j.id} (${kindLabel(j.kind)}) queued for ${shortId(j.device)}: it runs when the device next polls (maintenance mode)`),
  };

  const stats: TypedCommand<Record<string, never>, StatsOutput> = {
    usage: 'stats',
    help: 'counters of messages and of datagrams the secure channel dropped (forged, replayed, …), and pushes in progress',
    input: schema.object({}),
    parse: noArguments('stats'),
    run: () => ({
      messages: { ...server.stats },
      channel: { sessions: server.channel.sessionCount, ...server.channel.stats, socketDrops: server.channel.receiveDrops() ?? null },
      clients: server.registry.size,
      pushes: server.activeSessions.map((p) => ({ device: p.client.id, ...p.progress })),
    }),
    print: ({ messages: s, channel: c, clients, pushes }) => [
      `messages ${s.datagrams}, malformed ${s.malformed}, unexpected ${s.unexpected}, foreign ${s.foreign}, registrations ${s.registrations}, refused ${s.refused}, impersonation ${s.impersonation}, outcomes ignored ${s.outcomesIgnored}; ${clients} clients known`,
      `channel: ${c.sessions} sessions, ${c.handshakes} handshakes; dropped: unauthenticated ${c.unauthenticated}, malformed ${c.malformed}, bad tag ${c.badTag}, replayed ${c.replayed}, wrong address ${c.wrongAddress}, unknown session ${c.unknownSession}, bad cookie ${c.badCookie}, bad handshake ${c.badHandshake}, replayed handshake ${c.replayedHandshake}, repeated INIT (answered again) ${c.repeatedInit}, revoked key ${c.revokedKey}, rate-limited ${c.rateLimited}; cookies sent ${c.cookiesSent}; unread, its socket's buffer full ${c.socketDrops ?? 'unknown'}`,
      ...pushes.map((g) => `  push to ${shortId(g.device)}: ${g.phase} ${g.acked}/${g.total} chunks, ${g.retransmits} resent, ${g.timeouts} retransmission timeouts`),
    ],
  };

  const token: TypedCommand<{ action: 'create' | 'list' | 'revoke'; name?: string }, TokenOutput> = {
    usage: 'token create|list|revoke [NAME]',
    help: 'API tokens for the HTTP API (--http): create NAME prints a new one (once: it is kept only as a hash), list, revoke NAME',
    input: schema.object({ action: { type: 'string', enum: ['create', 'list', 'revoke'] }, name: schema.string({ minLength: 1 }) }, ['action']),
    parse: (words) => {
      const [action, name, extra] = words;
      if (extra !== undefined || (action !== 'list' && action !== 'create' && action !== 'revoke') || (action !== 'list' && name === undefined) || (action === 'list' && name !== undefined)) {
        throw new NxtError('usage', 'usage: token create|list|revoke [NAME]');
      }
      return { action, ...(name === undefined ? {} : { name }) };
    },
    run: async ({ action, name }) => {
      const tokens = o.tokens;
      if (!tokens) throw new NxtError('usage', 'this server keeps no API tokens');
      if (action === 'list') return { action, tokens: tokens.list().map((t) => ({ name: t.name, createdAt: t.createdAt })) };
      if (name === undefined) throw new NxtError('usage', `token ${action} needs the token's name`);
      if (action === 'revoke') { await tokens.revoke(name); return { action, name }; }
      return { action, name, token: await tokens.create(name, o.wallClock.wallNow()) };
    },
    print: (r) => {
      if (r.action === 'list') return r.tokens!.length === 0 ? ['no API tokens (token create NAME)'] : table(['NAME', 'CREATED'], r.tokens!.map((t) => [t.name, t.createdAt]));
      if (r.action === 'revoke') return [`token ${r.name} revoked`];
      return [`token ${r.name}: ${r.token}`, '(shown this once: keep it where the script that uses it can read it)'];
    },
  };

  /** `max-rate`: --max-rate, shown or changed while the server runs. */
  const maxRate: TypedCommand<{ mbit?: number; off?: boolean }, { mbit: number | null; sharing: number; waiting: number }> = {
    usage: 'max-rate [MBIT|off]',
    help: 'the most the server sends, every push, job file and multicast group together, shared fairly among them (as --max-rate): shown, or set now for the transfers under way too, or off',
    input: schema.object({ mbit: { type: 'number', minimum: MIN_RATE_MBIT, maximum: MAX_RATE_MBIT }, off: { type: 'boolean' } }),
    parse: (words) => {
      const usage = `usage: max-rate [MBIT|off] (${MIN_RATE_MBIT}-${MAX_RATE_MBIT} Mbit/s)`;
      if (words.length > 1) throw new NxtError('usage', usage);
      const [word] = words;
      if (word === undefined) return {};
      if (word === 'off') return { off: true };
      return { mbit: parseMaxRateMbit(word, usage) };
    },
    run: ({ mbit, off }) => {
      const rate = server.maxRate;
      if (!rate) throw new NxtError('usage', 'this server shares no rate');
      if (off === true) rate.setTotal(Number.POSITIVE_INFINITY);
      else if (mbit !== undefined) rate.setTotal(mbit * 125);
      return { mbit: rate.limited ? (rate.bytesPerMs * 8) / 1000 : null, sharing: rate.sharing, waiting: rate.waiting };
    },
    print: (r) => [r.mbit === null ? 'max rate: none (each transfer as fast as its path carries)' : describeMaxRate(server.maxRate!)],
  };

  return {
    push, clients, nodes, requests, versions, jobs, results, status, report, history, releases, tag: tagCommand(true), untag: tagCommand(false),
    'max-rate': maxRate,
    approve: decision('approve', 'approved', 'let a device into the fleet: it is registered now and receives pushes'),
    reject: decision('reject', 'rejected', 'turn a device away: it receives nothing (approve can still let it in later)'),
    revoke: decision('revoke', 'revoked', 'withdraw a device\'s key: its sessions end, its handshakes are refused, it leaves the fleet'),
    cancel, rollout, job, stats, token, 'remove-release': removeRelease,
  };
}

/** A campaign as `rollout` returns it (and `rollout status --json` prints it): its record, how
 *  many devices are at each step, and how many its stages reached so far. */
export type CampaignView = CampaignRecord & { readonly counts: Record<DeviceStep, number>; readonly reached: number };

const campaignView = (c: Campaign): CampaignView => ({ ...c.record, counts: c.counts(), reached: c.reached() });

interface RolloutInput {
  readonly action: 'start' | 'status' | 'pause' | 'resume' | 'cancel' | 'latest';
  /** status, pause, resume, cancel: which campaign (default: the only one, or every one). */
  readonly id?: string;
  /** start: the options as typed at the console (--stages 1,10%,100% …). */
  readonly release?: string;
  readonly to?: string;
  readonly stages?: string;
  readonly success?: string;
  readonly maxFailures?: string;
  readonly window?: string;
  readonly for: string[];
}

export interface RolloutOutput {
  readonly action: RolloutInput['action'];
  /** start, pause, resume, cancel: the campaign; status: those asked for. */
  readonly campaigns: CampaignView[];
  /** status of one campaign asked for by id (the console lists its devices). */
  readonly one?: boolean;
  /** latest: the push, or why nothing was sent. */
  readonly push?: PushOutput;
  readonly message?: string;
}

/** `rollout start`'s answer: the campaign as it begins. */
function describeStart(c: CampaignView): string {
  const { spec } = c;
  return `rollout ${c.id}: ${spec.release.name} ${spec.release.version} to ${c.members.length} device(s) (${spec.target === 'all' ? 'all' : `group ${spec.target}`}) in stages of ${describeStages(spec, c.members.length)}; `
    + `a stage starts when ${spec.successPercent}% of the devices so far committed; it pauses beyond ${describeLimit(spec.maxFailures)} failures${spec.window ? `; new pushes only ${formatWindow(spec.window)}` : ''}`;
}

function describeCampaign(c: CampaignView, detail: boolean): string {
  const n = c.counts;
  const lines = [
    `rollout ${c.id}: ${c.spec.release.name} ${c.spec.release.version} to ${c.members.length} device(s) (${c.spec.target}): ${c.state}${c.reason ? ` (${c.reason})` : ''}; `
      + `stage ${c.stage + 1} of ${c.spec.stages.length} (${c.reached} devices); ${n.committed} committed, ${n.already} already had it, ${n.trial} on probation, `
      + `${n.sending} sending, ${n.waiting} waiting, ${n.failed} failed, ${n['rolled-back']} rolled back`,
  ];
  if (detail) {
    for (const id of c.members) {
      const d = c.devices[id]!;
      lines.push(`  ${shortId(id)}  ${d.step}${d.detail ? `: ${d.detail}` : ''}`);
    }
  }
  return lines.join('\n');
}

/** A job as JSON gives it (POST /api/v1/commands/job); the console's words map onto it. */
interface JobInput {
  readonly kind: JobKindName;
  /** all, a group, or a device id (prefix). */
  readonly target: string;
  /** put, config, install: the file here to send. */
  readonly source?: string;
  /** backup, config-restore: the config file; put: where it goes on the device; config: its name there. */
  readonly name?: string;
  /** clean: logs, config or dropbox[/dir]. */
  readonly dir?: string;
  readonly since?: string;
  readonly until?: string;
  readonly severity?: string;
  readonly grep?: string;
  /** logs: one log file (--file NAME). */
  readonly logFile?: string;
  /** clean: --older-than 7d. */
  readonly olderThan?: string;
  /** install: --with NAME, the device's installer. */
  readonly installer?: string;
  readonly mkdir?: boolean;
  readonly apply?: boolean;
}

/** The console's `job …` words as a JobInput (what each kind takes is checked when it runs). */
function parseJob(words: string[]): JobInput {
  const mkdir = words.includes('--mkdir');
  const apply = words.includes('--apply');
  const { positional, options } = takeOptions(words.filter((a) => a !== '--mkdir' && a !== '--apply'), ['since', 'until', 'severity', 'grep', 'file', 'older-than', 'with']);
  const [typed, target, a, b, extra] = positional;
  const kind = typed === 'config-restore' ? 'configRestore' : typed;
  if (kind === undefined || target === undefined || extra !== undefined || !['logs', 'backup', 'put', 'clean', 'config', 'configRestore', 'install', 'report'].includes(kind)) {
    throw new NxtError('usage', 'usage: job logs|backup|put|clean|config|config-restore|install|report <all|GROUP|ID> … (help job)');
  }
  const usage: Record<string, string> = {
    logs: 'job logs <target> [--since T] [--until T] [--severity S] [--grep RE] [--file NAME]',
    backup: 'job backup <target> <config-name>',
    put: 'job put <target> <local-file> <remote-name> [--mkdir]',
    config: 'job config <target> <local-file> <config-name> [--apply]',
    configRestore: 'job config-restore <target> <config-name> [--apply]',
    report: 'job report <target>',
    install: 'job install <target> <local-file> --with <installer> (one the device\'s config names: deb, swu, …)',
    clean: 'job clean <target> <logs|config|dropbox[/dir]> [--older-than 7d]',
  };
  // How many words after the target each kind takes.
  const takes = { logs: 0, report: 0, backup: 1, configRestore: 1, clean: 1, install: 1, put: 2, config: 2 }[kind as JobKindName];
  const given = [a, b].filter((w) => w !== undefined).length;
  if (given !== takes || (kind === 'install' && options.with === undefined)) throw new NxtError('usage', `usage: ${usage[kind]}`);
  const input: Record<string, unknown> = {
    kind, target,
    since: options.since, until: options.until, severity: options.severity, grep: options.grep, logFile: options.file,
    olderThan: options['older-than'], installer: options.with,
    ...(mkdir ? { mkdir } : {}), ...(apply ? { apply } : {}),
  };
  if (kind === 'put' || kind === 'config') Object.assign(input, { source: a, name: b });
  else if (kind === 'install') input.source = a;
  else if (kind === 'clean') input.dir = a;
  else if (kind === 'backup' || kind === 'configRestore') input.name = a;
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as unknown as JobInput;
}

/** `stats`: the server's and the secure channel's counters, and the pushes in progress. */
export interface StatsOutput {
  readonly messages: ServerStats;
  /** socketDrops: datagrams the kernel dropped unread, the socket's buffer full (null: unknown). */
  readonly channel: ChannelStats & { readonly sessions: number; readonly socketDrops: number | null };
  readonly clients: number;
  readonly pushes: (PushProgress & { readonly device: string })[];
}

export interface TokenOutput {
  readonly action: 'create' | 'list' | 'revoke';
  readonly name?: string;
  /** create: the new token, shown this once. */
  readonly token?: string;
  readonly tokens?: { readonly name: string; readonly createdAt: string }[];
}

/** What a push reports: the release, the counts, each device's result (`said`: as the console says it). */
export interface PushOutput {
  readonly push: { readonly name: string; readonly version: string; readonly size: number; readonly sha256: string };
  readonly done: number;
  readonly failed: number;
  readonly deferred: number;
  readonly already: number;
  readonly devices: readonly {
    readonly id: string; readonly address: string; readonly ok: boolean; readonly already: boolean; readonly result: string;
    readonly message: string; readonly active?: string; readonly ms: number; readonly said: string;
  }[];
}

/** Push `release` to `clients`, saying so and showing progress while it goes. */
async function pushRelease(o: ServerReplOptions, release: Release, clients: ClientRecord[], rc: RunContext): Promise<PushOutput> {
  const m = release.manifest;
  rc.say(`push ${m.name} ${formatReleaseVersion(m.version)} (${size(m.size)}, sha256 ${m.sha256.slice(0, 12)}…) to ${clients.length} client(s)`);
  const show = rc.progress ?? ((): void => undefined);
  const ticker = progressTicker(o.server, o.clock, show, rc.bars === true);
  const reports = await o.server.push(release, clients).finally(() => { clearInterval(ticker); show([]); });
  const already = reports.filter((r) => r.already).length;
  const ok = reports.filter((r) => r.ok).length - already;
  const deferred = reports.filter((r) => r.outcome.code === ResultCode.deferred).length;
  return {
    push: { name: m.name, version: formatReleaseVersion(m.version), size: m.size, sha256: m.sha256 },
    done: ok, failed: reports.length - ok - already - deferred, deferred, already,
    devices: reports.map((r) => ({
      id: r.client.id, address: displayAddress(r.client.peer), ok: r.ok, already: r.already, result: resultCodeName(r.outcome.code),
      message: r.outcome.message, ...(r.outcome.active ? { active: formatReleaseVersion(r.outcome.active) } : {}), ms: Math.round(r.elapsedMs), said: describeOutcome(r),
    })),
  };
}

/** An inventory field as text ("-" when the device did not say). */
function inventoryText(inventory: DeviceView['inventory'], key: 'hostname'): string {
  return inventory[key] || '-';
}

/** "12s ago" from a last-seen time (ISO 8601), or the time as it is when it is not one. */
function lastSeenText(at: string, now: number): string {
  const t = Date.parse(at);
  return Number.isFinite(t) ? `${duration(Math.max(0, now - t))} ago` : at;
}

/**
 * The server commands, writing their output through `say`: the console uses them, and so does
 * `nxt-server ctl` over the control socket (each connection with its own `say`).
 */
export function serverCommands(o: ServerReplOptions, say: (line: string) => void, context: CommandContext = {}): Record<string, Command> {
  const typed = typedServerCommands(o);
  const commands: Record<string, Command> = {
    help: helpCommand(() => commands, say, context.columns),
    ...Object.fromEntries(Object.entries(typed).map(([name, c]) => [name, consoleCommand(c, say, context)])),
    exit: {
      usage: 'exit',
      help: 'stop the server',
      run: () => o.onExit(),
    },
  };
  return commands;
}

export function createServerRepl(o: ServerReplOptions): Repl {
  const { server } = o;
  // Through the console once it exists, so a background command's lines redraw the prompt.
  let shown: Repl | undefined;
  const say = (line: string): void => { if (shown) shown.print(line); else o.output.write(`${line}\n`); };
  const terminal = !o.headless && (o.output as { isTTY?: boolean }).isTTY === true && (o.input as { isTTY?: boolean }).isTTY === true;
  // Tab offers client ids (12 digits, as shown), device ids for enrollment, and groups.
  const completeArgs = (command: string): string[] => {
    if (['approve', 'reject', 'revoke'].includes(command)) return server.devices.all().map((d) => shortId(d.id));
    const ids = server.registry.all().map((c) => shortId(c.id));
    const groups = [...new Set(server.registry.all().flatMap((c) => c.tags))];
    return command === 'push' ? ['all', ...groups, ...ids, '--to', '--version'] : [...ids, ...groups, '--json'];
  };
  const repl: Repl = new Repl({
    prompt: 'NxtServer# ', input: o.input, output: o.output, headless: o.headless,
    onEnd: o.onEnd, onInterrupt: o.onExit, commands: serverCommands(o, say, { bars: terminal, columns: terminal ? terminalColumns(o.output) : undefined, progress: (lines) => { if (shown) shown.showStatus(lines); else for (const l of lines) say(l); } }),
    completeArgs, historyFile: o.historyFile,
  });
  shown = repl;
  server.on('client-registered', (c) => repl.print(`client ${shortId(c.id)} registered from ${displayAddress(c.peer)} (release ${formatReleaseVersion(c.version)})`));
  server.on('push-result', (r: PushReport) => repl.print(`  ${shortId(r.client.id)} ${displayAddress(r.client.peer)}  ${describeOutcome(r)}`, r.ok ? 'info' : 'warn'));
  server.on('warning', (w: string) => repl.print(`warning: ${w}`, 'warn'));
  server.on('trial-outcome', (o: TrialOutcome) => repl.print(describeTrialOutcome(o)));
  server.on('group-push', (g: GroupPushReport) => repl.print(describeGroupPush(g)));
  server.on('datagrams', (line: string) => repl.print(line));
  server.on('notice', (line: string) => repl.print(line));
  o.rollouts?.on('event', (c: Campaign, e: CampaignEvent) => repl.print(describeCampaignEvent(c, e)));
  o.rollouts?.on('warning', (w: string) => repl.print(`warning: ${w}`, 'warn'));
  const quiet = new QuietLines(FLEET_LINES_EVERY_MS);
  let quietTimer: NodeJS.Timeout | undefined;
  const showDue = (): void => {
    quietTimer = undefined;
    for (const line of quiet.due(o.clock.now())) repl.print(line);
    if (quiet.size > 0) quietTimer = setTimeout(showDue, FLEET_LINES_EVERY_MS).unref();
  };
  const fleetLine = (c: ClientRecord, line: string): void => {
    const shown = quiet.offer(c.id, line, o.clock.now());
    if (shown !== undefined) repl.print(shown);
    quietTimer ??= setTimeout(showDue, FLEET_LINES_EVERY_MS).unref();
  };
  server.on('client-gone', (c: ClientRecord) => fleetLine(c, `client ${shortId(c.id)} went offline (it said goodbye)`));
  server.on('client-back', (c: ClientRecord) => fleetLine(c, `client ${shortId(c.id)} is back from ${displayAddress(c.peer)} (release ${formatReleaseVersion(c.version)})`));
  server.on('auto-update', (c: ClientRecord, r: StoredRelease) => repl.print(`client ${shortId(c.id)} runs ${formatReleaseVersion(c.version)}: updating it to ${describeStored(r)} (--auto-update)`));
  server.on('report-queued', (j: Job) => repl.print(`job ${j.id} (report) queued for ${shortId(j.device)}: its report is due (--report-every)`));
  server.on('job-result', (j: Job) => repl.print(`job ${j.id} (${kindLabel(j.kind)}) on ${shortId(j.device)}: ${j.result}${j.message ? ` — ${j.message}` : ''}${j.file ? ` → ${j.file}` : ''}`));
  server.on('enrollment-request', (d: DeviceRecord) => repl.print(
    `device ${shortId(d.id)} asks to join from ${d.address} (${describeInventory(d.inventory)}, key ${d.fingerprint}): approve ${shortId(d.id)} or reject ${shortId(d.id)}`));
  return repl;
}

/** `--max-rate`'s line in `status` and `max-rate`. */
function describeMaxRate(rate: SharedRate): string {
  const n = rate.sharing;
  const w = rate.waiting;
  return `max rate ${Number(((rate.bytesPerMs * 8) / 1000).toPrecision(4))} Mbit/s, ${n === 0 ? 'no transfer under way' : `shared by ${n} transfer${n === 1 ? '' : 's'} under way`}`
    + (w === 0 ? '' : `, ${w} waiting ${w === 1 ? 'its' : 'their'} turn`);
}
