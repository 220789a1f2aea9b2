#!/usr/bin/env node
/** nxt-client: parse flags, wire the parts, run. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, statfsSync } from 'node:fs';
import { isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import { ClientAgent, DEFAULT_MAX_MODULE_BYTES, type UpdatePolicy } from '../client/agent.js';
import { JobClient } from '../client/job-client.js';
import type { Roots } from '../jobs/roots.js';
import { createClientRepl } from '../client/client-repl.js';
import { NxtError, errorMessage } from '../errors.js';
import { openUdpEndpoint } from '../net/endpoint.js';
import { ModuleStore } from '../plugin/module-store.js';
import { formatProductVersion } from '../plugin/plugin-shape.js';
import { formatReleaseVersion } from '../protocol/release-version.js';
import { readPublicKey, warmUpVerifier } from '../security/release-key.js';
import { ClientChannel } from '../session/client-channel.js';
import { clientIdOf } from '../session/handshake.js';
import { IDENTITY_PUBLIC_FILE, fingerprint, loadOrCreateIdentity, readIdentityPublic } from '../session/identity.js';
import { readStateFile, writeFileAtomic } from '../util/atomic-file.js';
import { systemClock, systemWallClock } from '../util/clock.js';
import { lockDir } from '../util/dir-lock.js';
import { EXIT_STATUS_HELP, EXIT_USAGE, exitWithError, parsePort, parsePositiveMs, parseSeconds, timerMs } from './exit-codes.js';
import { DEFAULT_HOST_LIMITS, prepareSpare, type HostLimits } from '../plugin/plugin-host.js';
import { keepRunningWithoutOutput, lifecycle } from './lifecycle.js';
import { setupClient } from './client-setup.js';
import { buildStatusReport, RecentLines } from '../client/status-report.js';
import { nxtVersion, versionLine } from './version.js';
import { CONSOLE_MODE_HELP, consoleMode } from './console-mode.js';
import { applyConfigFile, FORMATS, type ConfigType } from './config-file.js';
import { AGENT_FEATURES } from '../protocol/messages.js';

/** When the server last answered (for `health`), written at most every CONTACT_SAVE_MS. */
const CONTACT_FILE = 'last-contact';
const CONTACT_SAVE_MS = 60_000;

const program = new Command('nxt-client')
  .description('the nxt device agent: registers with a server and hot-loads signed plugin modules')
  .addOption(new Option('--server <host>', 'server host name or IP address (IPv4 or IPv6; required, here or in the config file); a name is looked up again when the server stops answering').env('NXT_SERVER'))
  .addOption(new Option('-p, --port <port>', 'server UDP port (required, here or in the config file)').env('NXT_PORT'))
  .addOption(new Option('-c, --config <file>', 'settings file (JSON, keys as the long options in camelCase; flags win)').env('NXT_CLIENT_CONFIG'))
  .addOption(new Option('--trust <file>', "the server's public release key (modules must be signed by it)").env('NXT_TRUST').default('state/server/release.pub'))
  .addOption(new Option('--server-key <file>', `the server's identity key (sessions must be with it); default: ${IDENTITY_PUBLIC_FILE} beside --trust`).env('NXT_SERVER_KEY'))
  .addOption(new Option('-d, --data-dir <dir>', 'where this client keeps its identity key and modules').env('NXT_DATA_DIR').default('state/client'))
  .addOption(new Option('--enroll-token <token>', 'approve this device without the operator (a token the server was started with)').env('NXT_ENROLL_TOKEN'))
  .addOption(new Option('--device-type <type>', 'what kind of device this is (gateway, kiosk, …): releases made for other types are refused').env('NXT_DEVICE_TYPE'))
  .addOption(new Option('--channel <name>', 'the release channel this device follows (stable, beta, …)').env('NXT_CHANNEL').default('stable'))
  .addOption(new Option('--policy <policy>', 'auto: activate a verified update at once; defer: keep it until "upgrade" (or --defer-max)').choices(['auto', 'defer']).default('auto'))
  .option('--defer-max <ms>', 'with --policy defer, activate a kept update after this long anyway')
  .option('--logs-dir <dir>', 'the logs root: log jobs read files here (default: <data-dir>/logs)')
  .option('--config-dir <dir>', 'the config root: backup jobs read files here (default: <data-dir>/config)')
  .option('--dropbox-dir <dir>', 'the drop-box root: put jobs write files here (default: <data-dir>/dropbox)')
  .option('--maintenance', 'start in maintenance mode: poll the server for jobs')
  .option('--maintenance-every <seconds>', 'enter maintenance mode this often, until no job is waiting')
  .addOption(new Option('--poll <ms>', 'how often to ask for jobs in maintenance mode').default('2000').hideHelp())
  .addOption(new Option('--rekey-after <ms>', 'shake hands for fresh session keys this often').default('600000').hideHelp())
  .option('--no-multicast', 'never join a multicast group the server names: receive every push by unicast')
  .option('--probation <seconds>', 'an activated module must run this long without a fault before it is committed (else it is rolled back)', '30')
  .option('--trial-timeout <ms>', 'a new module must load (and pass its selfTest) within this', '30000')
  .option('--module-memory <MiB>', 'heap a plugin module may use (more for large modules); the agent\'s memory may grow by twice this while it runs', '256')
  .option('--installer <name=command>', 'allow install jobs to hand files to this command ({file} is the path), e.g. deb="apt-get install -y {file}"; repeatable (config: "installers")', (v: string, all: string[]) => [...all, v], [] as string[])
  .option('--report-every <seconds>', 'ask the server for a status report job this often (it runs in maintenance mode)')
  .option('--install-timeout <seconds>', 'an installer still running after this is killed and its job failed', '1800')
  .option('--headless', CONSOLE_MODE_HELP.headless)
  .option('--log-format <text|json>', CONSOLE_MODE_HELP.logFormat)
  .option('--max-module-bytes <n>', 'refuse modules larger than this (V8 cannot load more than 512 MiB)', String(DEFAULT_MAX_MODULE_BYTES))
  .version(versionLine('nxt-client'), '-V, --version', 'print the version and exit')
  .addHelpText('after', EXIT_STATUS_HELP)
  .showHelpAfterError()
  // Bad usage exits 2, not commander's 1 (help and --version still exit 0).
  .enablePositionalOptions()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE));

interface ClientFlags {
  server?: string; port?: string; config?: string; trust: string; serverKey?: string; dataDir: string; maxModuleBytes: string; enrollToken?: string; rekeyAfter: string;
  policy: UpdatePolicy; deferMax?: string; multicast: boolean; probation: string; trialTimeout: string; moduleMemory: string;
  logsDir?: string; configDir?: string; dropboxDir?: string; maintenance?: boolean; maintenanceEvery?: string; poll: string;
  headless?: boolean; logFormat?: string; deviceType?: string; channel: string;
  installer: string[]; installers?: Record<string, string>; installTimeout: string; reportEvery?: string;
}

const whole = (minimum?: number, maximum?: number): ConfigType => ({ type: 'number', integer: true, minimum, maximum });
const CLIENT_CONFIG: Record<string, ConfigType> = {
  server: { type: 'string', format: 'host' }, port: whole(1, 65535), trust: 'string', serverKey: 'string', dataDir: 'string', maxModuleBytes: whole(1),
  enrollToken: 'string', policy: { type: 'string', enum: ['auto', 'defer'] }, deferMax: whole(1), rekeyAfter: whole(1), multicast: 'boolean',
  probation: { type: 'number', minimum: 0.001 }, trialTimeout: whole(1), moduleMemory: whole(16),
  logsDir: 'string', configDir: 'string', dropboxDir: 'string', maintenance: 'boolean', maintenanceEvery: whole(1),
  headless: 'boolean', logFormat: { type: 'string', enum: ['text', 'json'] },
  deviceType: { type: 'string', format: 'name' }, channel: { type: 'string', format: 'name' },
  installers: { type: 'map' }, installTimeout: whole(1), reportEvery: whole(1),
};

program.action(async (flags: ClientFlags) => {
  try {
    if (flags.config !== undefined) applyConfigFile(program, flags.config, CLIENT_CONFIG);
    const opts = program.opts<ClientFlags>();
    if (opts.server === undefined || opts.port === undefined) throw new NxtError('usage', 'give the server: --server <ip> --port <port> (or "server" and "port" in the config file)');
    const serverHost = opts.server;
    const serverAddress = await resolveHost(serverHost);
    if (opts.policy !== 'auto' && opts.policy !== 'defer') throw new NxtError('usage', `policy "${String(opts.policy)}" must be auto or defer`);
    const port = parsePort(opts.port);
    if (port === 0) throw new NxtError('usage', 'the server port cannot be 0');
    const maxModuleBytes = Number(opts.maxModuleBytes);
    if (!/^\d+$/.test(opts.maxModuleBytes) || maxModuleBytes < 1) throw new NxtError('usage', `--max-module-bytes "${opts.maxModuleBytes}" is not a positive number of bytes`);
    const rekeyAfterMs = timerMs('--rekey-after', parsePositiveMs(opts.rekeyAfter));
    const deferMaxMs = opts.deferMax === undefined ? undefined : timerMs('--defer-max', parsePositiveMs(opts.deferMax));
    const pollMs = timerMs('--poll', parsePositiveMs(opts.poll));
    const maintenanceEveryMs = opts.maintenanceEvery === undefined ? undefined : timerMs('--maintenance-every', parsePositiveMs(opts.maintenanceEvery) * 1000);
    const probationMs = timerMs('--probation', parseSeconds('--probation', opts.probation) * 1000);
    const mode = await consoleMode('nxt-client', opts);
    for (const [flag, value] of [['--device-type', opts.deviceType], ['--channel', opts.channel]] as const) {
      if (value !== undefined && !FORMATS.name.check(value)) throw new NxtError('usage', `${flag} "${value}" must be ${FORMATS.name.says}`);
    }
    const trustedKey = readPublicKey(opts.trust);
    const serverKey = readIdentityPublic(opts.serverKey ?? join(dirname(opts.trust), IDENTITY_PUBLIC_FILE));
    const store = new ModuleStore(opts.dataDir);
    const unlock = lockDir(opts.dataDir, 'client');
    process.on('exit', unlock);
    const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
    const { keys: identity } = loadOrCreateIdentity(opts.dataDir, random);
    const clientId = clientIdOf(identity.publicKey);
    const heapMb = Number(opts.moduleMemory);
    if (!/^\d+$/.test(String(opts.moduleMemory)) || heapMb < 16) throw new NxtError('usage', `--module-memory "${opts.moduleMemory}" must be a whole number of MiB, at least 16`);
    const hostLimits: Partial<HostLimits> = {
      loadTimeoutMs: timerMs('--trial-timeout', parsePositiveMs(String(opts.trialTimeout))), heapMb, rssGrowthMb: 2 * heapMb,
      // A thread silent for this long is hung; never longer than the probation it guards.
      hangMs: Math.min(DEFAULT_HOST_LIMITS.hangMs, Math.max(500, probationMs / 2)),
    };
    prepareSpare(heapMb);
    const { active, warning, interrupted } = await store.loadActive(hostLimits);
    const deferred = await store.loadDeferred();
    // Files of modules superseded before a restart (or by an agent that kept them all).
    const pruned = store.prune();
    const server = { address: serverAddress, port };
    const family = isIP(serverAddress) === 6 ? 6 : 4;
    const endpoint = await openUdpEndpoint({ port: 0, host: family === 6 ? '::' : '0.0.0.0' });
    const channel = new ClientChannel({
      endpoint, server, serverKey, identity, clock: systemClock, random, nextStamp: stampCounter(opts.dataDir), timing: { rekeyAfterMs },
      resolveServer: isIP(serverHost) !== 0 ? undefined : () => lookup(serverHost, { family }).then((r) => r.address, () => undefined),
    });
    const roots: Roots = {
      logs: opts.logsDir ?? join(opts.dataDir, 'logs'), config: opts.configDir ?? join(opts.dataDir, 'config'), dropbox: opts.dropboxDir ?? join(opts.dataDir, 'dropbox'),
    };
    for (const r of Object.values(roots)) mkdirSync(r, { recursive: true, mode: 0o700 });
    // The agent is made below; a job reaches it only once both run.
    let reconfigure: (name: string, path: string) => Promise<string | undefined> = () => Promise.reject(new Error('the agent is starting'));
    let statusReport: () => Promise<Record<string, unknown>> = () => Promise.reject(new Error('the agent is starting'));
    const installers = { ...opts.installers };
    for (const flag of opts.installer) {
      const m = /^([a-z0-9_-]{1,32})=(.+)$/.exec(flag);
      if (!m) throw new NxtError('usage', `--installer "${flag}": expected NAME=COMMAND, e.g. deb="apt-get install -y {file}"`);
      installers[m[1]!] = m[2]!;
    }
    const installTimeoutMs = timerMs('--install-timeout', parseSeconds('--install-timeout', opts.installTimeout) * 1000);
    // --report-every: the inventory says a report is due once that long has passed since the last.
    const reportEveryMs = opts.reportEvery === undefined ? undefined : parseSeconds('--report-every', String(opts.reportEvery)) * 1000;
    let lastReportAt = Number.NEGATIVE_INFINITY;
    const reportDue = (): boolean => reportEveryMs !== undefined && Date.now() - lastReportAt >= reportEveryMs;
    const jobs = new JobClient({
      send: (bytes) => channel.send(bytes), clock: systemClock, roots, workDir: opts.dataDir, pollMs, reconfigure: (n, p) => reconfigure(n, p), installers, installTimeoutMs,
      statusReport: () => statusReport(),
    });
    const agent = new ClientAgent({
      jobs,
      channel, server, clientId, store, trustedKey, clock: systemClock, wallClock: systemWallClock, initial: active, maxModuleBytes,
      enrollToken: opts.enrollToken,
      inventory: () => JSON.stringify({ ...inventory(opts.dataDir, opts.deviceType, opts.channel), ...(reportDue() ? { reportDue: true } : {}) }), policy: opts.policy, deferMaxMs, deferred,
      probationMs, hostLimits, interrupted, multicast: opts.multicast,
      facts: { type: opts.deviceType, arch: os.arch(), channel: opts.channel, agent: nxtVersion() },
    });
    reconfigure = (name, path) => agent.reconfigure(name, path);
    // Warnings and refusals, kept for status reports.
    const recent = new RecentLines();
    agent.channel.on('warning', (line: string) => recent.add(`warning: ${line}`));
    agent.on('refused', (r: { message: string }) => recent.add(`update refused: ${r.message}`));
    agent.on('rolled-back', (r: { reason?: string }) => recent.add(`rolled back${r.reason ? `: ${r.reason}` : ''}`));
    const startedAt = Date.now();
    statusReport = () => { lastReportAt = Date.now(); return buildStatusReport({
      agent, roots, dataDir: opts.dataDir, recent, agentVersion: nxtVersion(), startedAt, facts: { type: opts.deviceType, channel: opts.channel, arch: os.arch() },
    }); };
    if (warning) mode.note(`warning: ${warning}`, 'warn');
    const idHex = Buffer.from(clientId).toString('hex');
    mode.note(`nxt client ${idHex} (key ${fingerprint(identity.publicKey)}) → ${serverHost === serverAddress ? serverAddress : `${serverHost} (${serverAddress})`}:${port}, trusting server key ${fingerprint(serverKey)}`);
    mode.note(formatProductVersion(active.product));
    if (deferred) mode.note(`update ${deferred.name} ${formatReleaseVersion(deferred.version)} is verified and waiting: type upgrade to activate it`);
    if (pruned.length > 0) mode.note(`removed ${pruned.length} module file(s) nothing needs any more from ${store.modulesDir}`);
    const { stop, inputEnded } = lifecycle('client', async () => { repl.close(); await agent.stop(); });
    const repl = createClientRepl({
      agent, jobs, clientIdHex: idHex, input: process.stdin, output: process.stdout, headless: mode.headless, onExit: stop, onEnd: inputEnded,
    });
    // For health checks (`nxt-client health`): when the server last answered, at most once a minute.
    let contactSavedAt = 0;
    agent.on('renewed', () => {
      const now = Date.now();
      if (now - contactSavedAt < CONTACT_SAVE_MS) return;
      contactSavedAt = now;
      try { writeFileAtomic(join(opts.dataDir, CONTACT_FILE), `${new Date(now).toISOString()}\n`); } catch { /* health is a convenience; the disk may be full */ }
    });
    // Idle once registered: tweetnacl warms up then, not in the first push (release-key.ts).
    agent.once('registered', () => setImmediate(() => { if (!warmUpVerifier()) mode.note('warning: Ed25519 verification fails RFC 8032\'s test vector', 'warn'); }));
    agent.start();
    repl.start();
    if (opts.maintenance) jobs.setMaintenance(true);
    if (maintenanceEveryMs !== undefined) jobs.schedule(maintenanceEveryMs);
  } catch (err) {
    exitWithError('nxt-client', err);
  }
});

/**
 * Handshake stamps: above every one this key used before, even after a reboot with a clock that
 * went back (a device without a real-time clock), because the last one is kept on disk. The server
 * refuses a stamp not above the last it saw from this key (a replayed handshake).
 */
function stampCounter(dataDir: string): () => number {
  const path = join(dataDir, 'handshake-stamp');
  let last = 0;
  try {
    last = readStateFile(path, (text) => {
      const n = Number(text.trim());
      if (!Number.isSafeInteger(n) || n <= 0) throw new Error('not a positive integer');
      return n;
    }) ?? 0;
  } catch (err) {
    // Both copies lost: the clock is all there is (the server refuses a stamp below its last).
    process.stderr.write(`warning: ${errorMessage(err)}\n`);
  }
  let unsaved = false;
  return () => {
    last = Math.max(Date.now(), last + 1);
    try {
      writeFileAtomic(path, `${last}\n`);
      if (unsaved) process.stderr.write('nxt-client: the handshake stamp is saved again\n');
      unsaved = false;
    } catch (err) {
      // Shake hands anyway: a device whose disk is full must stay reachable (a clean job may be
      // what frees it). The stamp is still above every one used before; only after a restart
      // with a clock that went back could the server take it for a replay. Tried again each time.
      if (!unsaved) process.stderr.write(`nxt-client: warning: ${errorMessage(err)}; shaking hands with a stamp kept in memory only\n`);
      unsaved = true;
    }
    return last;
  };
}

/** What this device tells the server about itself when it registers (server/devices.ts). */
function inventory(dataDir: string, type: string | undefined, channel: string): Record<string, string | number> {
  const inv: Record<string, string | number> = {
    hostname: os.hostname(), os: `${os.type()} ${os.release()}`, arch: os.arch(), cpus: os.cpus().length, memoryBytes: os.totalmem(),
    channel, agent: nxtVersion(), features: AGENT_FEATURES, ...(type === undefined ? {} : { type }),
  };
  try {
    const fs = statfsSync(dataDir);
    inv.diskFreeBytes = fs.bavail * fs.bsize;
  } catch { /* not every filesystem answers */ }
  return inv;
}

program
  .command('setup')
  .description("give this device its server: check and install the server's public keys beside the config file, and write the server, port and keys into it")
  .requiredOption('--server <host:port>', 'the server, e.g. updates.example.com:9000 or [fd00::1]:9000')
  .requiredOption('--trust <file>', "the server's release.pub (from its state dir)")
  .option('--server-key <file>', `the server's identity key (default: ${IDENTITY_PUBLIC_FILE} beside --trust)`)
  .option('--enroll-token <token>', 'approve this device without the operator (a token the server was started with)')
  .addOption(new Option('-c, --config <file>', 'the config file to write').env('NXT_CLIENT_CONFIG').default('nxt-client.json'))
  .action((o: { server: string; trust: string; serverKey?: string; enrollToken?: string; config: string }) => {
    try {
      for (const line of setupClient(o)) process.stdout.write(`${line}\n`);
      process.stdout.write(o.config === '/etc/nxt/client.json'
        ? 'start it: systemctl enable --now nxt-client (or restart it: systemctl restart nxt-client)\n'
        : `start it: nxt-client --config ${o.config}\n`);
    } catch (err) {
      exitWithError('nxt-client setup', err);
    }
  });

program
  .command('health')
  .description('exit 0 if the client running on this data dir heard from its server lately (for Docker HEALTHCHECK, monitoring), else 1')
  .addOption(new Option('-d, --data-dir <dir>', 'the client\'s data dir').env('NXT_DATA_DIR').default('state/client'))
  .option('--max-age <seconds>', 'how recent the last answer must be', '180')
  .action((o: { dataDir: string; maxAge: string }) => {
    try {
      const maxAge = parseSeconds('--max-age', o.maxAge) * 1000;
      const text = readStateFile(join(o.dataDir, CONTACT_FILE), (t) => t.trim());
      const at = text === undefined ? NaN : Date.parse(text);
      if (!Number.isFinite(at)) throw new NxtError('unhealthy', 'this client has not heard from its server yet');
      const age = Date.now() - at;
      if (age > maxAge) throw new NxtError('unhealthy', `the server last answered ${Math.round(age / 1000)} s ago (${text})`);
      process.stdout.write(`ok: the server answered ${Math.round(age / 1000)} s ago\n`);
    } catch (err) {
      exitWithError('nxt-client health', err);
    }
  });

keepRunningWithoutOutput();
await program.parseAsync();

/** An IP address as it is; a host name looked up (a Compose service name, a DNS name). */
async function resolveHost(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(host)) throw new NxtError('usage', `"${host}" is neither an IP address nor a host name`);
  try {
    return (await lookup(host)).address;
  } catch (err) {
    throw new NxtError('no-such-host', `cannot look up the server "${host}": ${errorMessage(err)}`);
  }
}
