/** nxt-server (all but the fast path of `ctl`, see server.ts): parse flags, wire the parts, run. */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { openUdpEndpoint, SERVER_RECEIVE_BUFFER_BYTES } from '../net/endpoint.js';
import readlineSync from 'readline-sync';
import { signManifest } from '../security/manifest.js';
import { describeCompatibility, parseFor } from '../security/compatibility.js';
import {
  isReleaseKeySealed, loadOrCreateReleaseKey, loadReleaseKeyOrPublic, PUBLIC_KEY_FILE, sealReleaseKey, warmUpSigner, type PassphraseSource,
} from '../security/release-key.js';
import { NxtError } from '../errors.js';
import { DEFAULT_MANIFEST_TTL_S, encodePresigned, prepareRelease, PRESIGNED_SUFFIX, SMALL_CHUNK_BYTES, type Release } from '../server/release.js';
import { CHUNKS_HEADER_BYTES, chunkEntryBytes, MAX_UDP_PAYLOAD_BYTES } from '../protocol/envelope.js';
import { ReleaseStore, type StoredRelease } from '../server/release-store.js';
import { Notifier } from '../server/notifier.js';
import { JobStore } from '../server/job-store.js';
import { JobServer } from '../server/job-server.js';
import { DAY_MS } from '../server/job-files.js';
import { formatReleaseVersion } from '../protocol/release-version.js';
import { History } from '../server/history.js';
import { Devices } from '../server/devices.js';
import { IDENTITY_PUBLIC_FILE, fingerprint, loadOrCreateIdentity } from '../session/identity.js';
import { DEFAULT_LIMITS, ServerChannel } from '../session/server-channel.js';
import { NxtServer } from '../server/server.js';
import { createServerRepl, serverCommands, typedServerCommands, type ServerReplOptions } from '../server/server-repl.js';
import { listenControl, type ControlOutput } from '../server/control-socket.js';
import { apiHandler, sweepUploads } from '../server/http-api.js';
import { liveEvents } from '../server/live-events.js';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:http';
import { ApiTokens } from '../server/api-tokens.js';
import type { AddressInfo } from 'node:net';
import { runCtl } from './ctl.js';
import { systemClock, systemWallClock } from '../util/clock.js';
import { lockDir } from '../util/dir-lock.js';
import { ensureDir, writeFileAtomic } from '../util/atomic-file.js';
import { warmHashBuffers } from '../util/hash-file.js';
import { EXIT_STATUS_HELP, EXIT_USAGE, exitWithError, parseHostPort, parsePort, parsePositiveMs, timerMs } from './exit-codes.js';
import { lifecycle } from './lifecycle.js';
import { nxtVersion, versionLine } from './version.js';
import { CONSOLE_MODE_HELP, consoleMode } from './console-mode.js';
import { applyConfigFile, FORMATS, type ConfigType } from './config-file.js';
import { isIP } from 'node:net';
import { Rollouts } from '../server/rollouts.js';
import { checkDatabaseUrl, openStore } from '../store/open-store.js';
import { Cluster } from '../server/cluster.js';
import { hostname } from 'node:os';
import { formatGroup, openMulticastSender, parseGroup, type MulticastSender } from '../net/multicast.js';
import type { GroupPushOptions } from '../server/group-push.js';
import type { Campaign, CampaignEvent } from '../server/campaign.js';
import { MAX_RATE_MBIT, MIN_RATE_MBIT, parseMaxRateMbit, SharedRate } from '../transfer/rate-share.js';

const DEFAULT_STATE_DIR = 'state/server';
/** The smallest datagram that carries one whole small chunk (CHUNKS header + a 1400-byte entry). */
const MIN_DATAGRAM = CHUNKS_HEADER_BYTES + chunkEntryBytes(SMALL_CHUNK_BYTES);

const program = new Command('nxt-server')
  .description('push signed plugin modules to nxt clients over UDP')
  .option('-p, --port <port>', 'UDP port to listen on (IPv4 and IPv6)', '9000')
  .addOption(new Option('-s, --state-dir <dir>', 'where the release key and server state live').env('NXT_STATE_DIR').default(DEFAULT_STATE_DIR))
  .addOption(new Option('--node-name <name>', 'this node\'s name among several sharing one PostgreSQL database (default: host name and UDP port)').env('NXT_NODE_NAME'))
  .addOption(new Option('--database <url>', 'where the fleet\'s state lives: postgres://USER@HOST/DB (several nodes may share it) or sqlite:PATH; default: nxt.db in the state dir').env('NXT_DATABASE'))
  .option('--peer-timeout <ms>', 'fail a push to a client silent this long', '10000')
  .option('--renew <ms>', 'how often clients renew their registration (at most a day: 86400000)', '10000')
  .option('--manifest-ttl <seconds>', 'how long a signed push stays installable; clients refuse it after that', String(DEFAULT_MANIFEST_TTL_S))
  .addOption(new Option('-c, --config <file>', 'settings file (JSON, keys as the long options in camelCase; flags win)').env('NXT_SERVER_CONFIG'))
  .option('--max-handshakes <per-second>', 'session handshakes accepted per second, all clients together (each costs about 0.4 ms of one core, as measured on the test machine)', String(DEFAULT_LIMITS.handshakesPerSecond))
  .option('--max-datagram <bytes>', 'never send a datagram larger than this (1452: an Ethernet path; default: what each path is found to carry, up to 65507, and to a device on our own LAN one 8650-byte chunk a datagram, which IP fragments; 1472 keeps those whole)')
  .option('--max-rate <Mbit/s>', 'the most the server sends, every push, job file and multicast group together (a site\'s uplink, a metered link), shared fairly among the devices being sent to; default: no limit but each path\'s own')
  .option('--multicast <group[:port]>', 'send a push to several devices once, to this multicast group (e.g. 239.255.77.1:7702, administratively scoped), then repair by unicast')
  .option('--multicast-ttl <hops>', 'hops a multicast datagram may cross (1: this LAN only)', '1')
  .option('--multicast-interface <address>', 'the local address of the interface the group is on (default: the routing table\'s choice)')
  .option('--multicast-datagram <bytes>', 'the largest group datagram (default: one 8650-byte chunk, or what the interface carries whole if more, which IP fragments on a 1500-byte LAN: a sixth of the datagrams for every device, but a lost fragment loses the datagram; 1472 keeps them whole, each chunk cut into six pieces)')
  .option('--multicast-rate <Mbit/s>', 'the most the group is sent (it goes slower when devices lose data)', '2000')
  .option('--notify-webhook <url>', 'POST a JSON alert here when a push fails on a device or a device stays behind')
  .option('--smtp <url>', 'mail server for alerts, e.g. smtp://mail.example.com:587 (user:password@ allowed)')
  .option('--notify-email <address>', 'send alerts to this address (needs --smtp)')
  .option('--notify-from <address>', 'sender of alert emails', 'nxt-server <nxt@localhost>')
  .addOption(new Option('--notify-retry <ms>', 'first retry of an undelivered alert (then doubling, 5 attempts)').default('1000').hideHelp())
  .option('--behind-after <seconds>', 'alert when an online device runs an older release than the latest for this long')
  .option('--auto-update', 'push the latest release to any client that registers (or comes back) behind it')
  .option('--no-pieces', 'where a large chunk does not fit a path\'s datagrams, send 1400-byte chunks rather than cut it into pieces (for a path that reorders datagrams by far more than its round trip)')
  .addOption(new Option('--enroll-token <token>', 'devices started with this token are approved without asking (comma-separate several)').env('NXT_ENROLL_TOKEN'))
  .addOption(new Option('--public-dir <dir>', 'also write the public keys clients need (release.pub, identity.pub) here, e.g. a volume shared with client containers').env('NXT_PUBLIC_DIR'))
  .option('--http <addr:port>', 'serve the HTTP API (JSON, API tokens: token create NAME) here, e.g. 127.0.0.1:8080')
  .option('--http-max-upload <MiB>', 'the largest module the HTTP API takes', '512')
  .option('--keep-uploads <days>', 'delete what devices uploaded for jobs (logs, backups, reports) this many days after it arrived; each device\'s newest report stays (0: keep everything)', '90')
  .option('--keep-jobs <days>', 'forget the records of finished jobs this many days after they finished; each device\'s newest report stays (0: keep everything)', '365')
  .option('--keep-history <days>', 'forget push history entries (results, trials) this many days after they happened; `releases` still counts them (0: keep everything)', '365')
  .option('--headless', CONSOLE_MODE_HELP.headless)
  .option('--log-format <text|json>', CONSOLE_MODE_HELP.logFormat)
  // Options after a subcommand belong to it (keygen --state-dir D).
  .enablePositionalOptions()
  .helpCommand('help [command]', 'explain a command (or everything)')
  .version(versionLine('nxt-server'), '-V, --version', 'print the version and exit')
  .addHelpText('after', EXIT_STATUS_HELP)
  .showHelpAfterError()
  // Bad usage exits 2, not commander's 1 (help and --version still exit 0).
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE));

interface ServerFlags {
  port: string; stateDir: string; peerTimeout: string; renew: string; manifestTtl: string; enrollToken?: string; autoUpdate?: boolean; pieces?: boolean;
  maxHandshakes: string; config?: string; maxDatagram?: string; maxRate?: string;
  multicast?: string; multicastTtl: string; multicastInterface?: string; multicastRate: string; multicastDatagram?: string;
  notifyWebhook?: string; smtp?: string; notifyEmail?: string; notifyFrom: string; behindAfter?: string; notifyRetry: string;
  headless?: boolean; logFormat?: string; publicDir?: string; http?: string; httpMaxUpload: string;
  database?: string; nodeName?: string; keepUploads: string; keepJobs: string; keepHistory: string;
}

const whole = (minimum?: number, maximum?: number): ConfigType => ({ type: 'number', integer: true, minimum, maximum });
const SERVER_CONFIG: Record<string, ConfigType> = {
  port: whole(0, 65535), stateDir: 'string', database: 'string', nodeName: 'string', peerTimeout: whole(1), renew: whole(1), manifestTtl: whole(1),
  enrollToken: 'string', autoUpdate: 'boolean', pieces: 'boolean', maxHandshakes: whole(1), maxDatagram: whole(MIN_DATAGRAM, MAX_UDP_PAYLOAD_BYTES),
  maxRate: { type: 'number', minimum: MIN_RATE_MBIT, maximum: MAX_RATE_MBIT },
  multicast: 'string', multicastTtl: whole(1, 255), multicastInterface: { type: 'string', format: 'ip' }, multicastRate: { type: 'number', minimum: 1, maximum: 100_000 },
  multicastDatagram: whole(MIN_DATAGRAM, MAX_UDP_PAYLOAD_BYTES),
  notifyWebhook: { type: 'string', format: 'http-url' }, smtp: { type: 'string', format: 'smtp-url' }, notifyEmail: { type: 'string', format: 'email' },
  notifyFrom: { type: 'string', format: 'email' }, behindAfter: whole(1),
  headless: 'boolean', logFormat: { type: 'string', enum: ['text', 'json'] }, publicDir: 'string', http: 'string', httpMaxUpload: whole(1),
  keepUploads: { type: 'number', minimum: 0 }, keepJobs: { type: 'number', minimum: 0 }, keepHistory: { type: 'number', minimum: 0 },
};

/** A --keep-* option: days (fractions allowed), 0 keeping everything; undefined: for ever. */
function keepMs(flag: string, value: string): number | undefined {
  if (!/^\d+(\.\d+)?$/.test(String(value))) throw new NxtError('usage', `${flag} "${value}" is not a number of days (0 keeps everything)`);
  const days = Number(value);
  return days > 0 ? days * DAY_MS : undefined;
}

program.action(async (flags: ServerFlags) => {
  try {
    if (flags.config !== undefined) applyConfigFile(program, flags.config, SERVER_CONFIG);
    const opts = program.opts<ServerFlags>();
    const port = parsePort(opts.port);
    const handshakesPerSecond = Number(opts.maxHandshakes);
    if (!/^\d+$/.test(opts.maxHandshakes) || handshakesPerSecond < 1) throw new NxtError('usage', `--max-handshakes "${opts.maxHandshakes}" is not a positive whole number`);
    const peerTimeoutMs = timerMs('--peer-timeout', parsePositiveMs(opts.peerTimeout));
    const maxDatagram = opts.maxDatagram === undefined ? undefined : Number(opts.maxDatagram);
    if (maxDatagram !== undefined && (!/^\d+$/.test(opts.maxDatagram!) || maxDatagram < MIN_DATAGRAM || maxDatagram > MAX_UDP_PAYLOAD_BYTES)) {
      throw new NxtError('usage', `--max-datagram "${opts.maxDatagram}" must be a whole number of bytes from ${MIN_DATAGRAM} to ${MAX_UDP_PAYLOAD_BYTES}`);
    }
    const maxRateMbit = opts.maxRate === undefined ? undefined
      : parseMaxRateMbit(String(opts.maxRate), `--max-rate "${opts.maxRate}" must be ${MIN_RATE_MBIT}-${MAX_RATE_MBIT} Mbit/s`);
    // At most a day: devices renew at least daily, and their lease (3 renewals and a second) must
    // fit the wire's 32 bits.
    const renewMs = timerMs('--renew', parsePositiveMs(opts.renew), DAY_MS);
    if (!/^\d+$/.test(opts.manifestTtl)) throw new NxtError('usage', `--manifest-ttl "${opts.manifestTtl}" is not a number of seconds`);
    const manifestTtlSeconds = Number(opts.manifestTtl);
    if ((opts.smtp === undefined) !== (opts.notifyEmail === undefined)) throw new NxtError('usage', 'email alerts need both --smtp and --notify-email');
    for (const [flag, value, format] of [['--notify-webhook', opts.notifyWebhook, 'http-url'], ['--smtp', opts.smtp, 'smtp-url'], ['--notify-email', opts.notifyEmail, 'email'],
      ['--notify-from', opts.notifyFrom, 'email']] as const) {
      if (value !== undefined && !FORMATS[format].check(value)) throw new NxtError('usage', `${flag} "${value}" is not ${FORMATS[format].says}`);
    }
    if (opts.behindAfter !== undefined && !/^\d+$/.test(opts.behindAfter)) throw new NxtError('usage', `--behind-after "${opts.behindAfter}" is not a number of seconds`);
    const notifyRetryMs = timerMs('--notify-retry', parsePositiveMs(opts.notifyRetry));
    const keepUploadsMs = keepMs('--keep-uploads', opts.keepUploads);
    const keepJobsMs = keepMs('--keep-jobs', opts.keepJobs);
    const keepHistoryMs = keepMs('--keep-history', opts.keepHistory);
    if (opts.database !== undefined) checkDatabaseUrl(opts.database);
    if (opts.nodeName !== undefined && !/^[\w.:-]{1,64}$/.test(opts.nodeName)) throw new NxtError('usage', `--node-name "${opts.nodeName}": 1-64 letters, digits, ".", ":", "_" or "-"`);
    const mode = await consoleMode('nxt-server', opts);
    const http = opts.http === undefined ? undefined : parseHttpAddress(opts.http);
    const httpMaxUploadBytes = Number(opts.httpMaxUpload) * 1024 * 1024;
    if (!/^\d+$/.test(String(opts.httpMaxUpload)) || !(httpMaxUploadBytes > 0)) throw new NxtError('usage', `--http-max-upload "${opts.httpMaxUpload}" is not a whole number of MiB`);
    const closers: (() => Promise<void>)[] = [];
    ensureDir(opts.stateDir);
    process.on('exit', lockDir(opts.stateDir, 'server'));
    // Before any socket opens: readline-sync blocks the event loop while it asks.
    const { signer, publicKey, created } = loadReleaseKeyOrPublic(opts.stateDir, (n) => randomBytes(n), { passphrase: askPassphrase('release key passphrase: ') });
    const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
    const { keys: identity, created: newIdentity } = loadOrCreateIdentity(opts.stateDir, random);
    const store = await openStore({ database: opts.database, stateDir: opts.stateDir, note: (line) => mode.note(line), warn: (line) => mode.note(line, 'warn') });
    const devices = await Devices.open(store);
    let multicast: { sender: MulticastSender; options: Partial<GroupPushOptions> } | undefined;
    if (opts.multicast !== undefined) {
      const group = parseGroup(opts.multicast);
      const ttl = Number(opts.multicastTtl);
      if (!/^\d+$/.test(String(opts.multicastTtl)) || ttl < 1 || ttl > 255) throw new NxtError('usage', `--multicast-ttl "${opts.multicastTtl}" must be 1-255`);
      const maxMbit = Number(opts.multicastRate);
      if (!(maxMbit >= 1 && maxMbit <= 100_000)) throw new NxtError('usage', `--multicast-rate "${opts.multicastRate}" must be 1-100000 Mbit/s`);
      if (opts.multicastInterface !== undefined && isIP(opts.multicastInterface) === 0) throw new NxtError('usage', `--multicast-interface "${opts.multicastInterface}" is not an IP address`);
      const groupDatagram = opts.multicastDatagram === undefined ? undefined : Number(opts.multicastDatagram);
      if (groupDatagram !== undefined && (!Number.isInteger(groupDatagram) || groupDatagram < MIN_DATAGRAM || groupDatagram > MAX_UDP_PAYLOAD_BYTES)) {
        throw new NxtError('usage', `--multicast-datagram "${opts.multicastDatagram}" must be a whole number of bytes from ${MIN_DATAGRAM} to ${MAX_UDP_PAYLOAD_BYTES}`);
      }
      multicast = { sender: await openMulticastSender(group, { ttl, interfaceAddress: opts.multicastInterface, maxDatagram: groupDatagram }), options: { maxMbit, startMbit: Math.min(200, maxMbit) } };
    }
    const endpoint = await openUdpEndpoint({ port, receiveBufferBytes: SERVER_RECEIVE_BUFFER_BYTES }).catch((err: unknown) => {
      // Said as what to do, not as bind's "EADDRINUSE 0.0.0.0:9000".
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new NxtError('port-in-use', `UDP port ${port} is in use (another nxt-server, or another program): choose another with --port`, { cause: err });
      if (code === 'EACCES') throw new NxtError('port-refused', `UDP port ${port} needs privileges this user does not have: choose one above 1023 with --port`, { cause: err });
      throw err;
    });
    // Several nodes on one PostgreSQL: join them (a number for the session indexes, a name).
    const cluster = store.engine.kind !== 'postgres' ? undefined : await Cluster.join({
      store, name: opts.nodeName ?? `${hostname()}:${endpoint.port}`, address: `${hostname()}:${endpoint.port}`, wallClock: systemWallClock, stateDir: opts.stateDir,
      prepare: (stored) => prepareStored(stored), warn: (line) => server.emit('warning', line), signer, publicKey,
    });
    const channel = new ServerChannel({ nodeNumber: cluster?.number,
      endpoint, clock: systemClock, identity, random, isRevoked: (id) => devices.isRevoked(id), onWarning: (line) => server.emit('warning', line),
      limits: { handshakesPerSecond, handshakeBurst: 2 * handshakesPerSecond },
    });
    const history = new History(store);
    const tokens = await ApiTokens.open(store, random);
    const releases = await ReleaseStore.open(opts.stateDir, store);
    // A stored module signed again, fresh (a new expiry), unless it was signed offline.
    // Its bytes may be only in the database (another node stored it): fetched first.
    const prepareStored = async (stored: StoredRelease): Promise<Release> => {
      const here = cluster && !existsSync(stored.file) ? await cluster.copyOf(stored.sha256) : stored;
      return prepareRelease(here.file, {
        version: stored.presigned ? undefined : formatReleaseVersion(stored.version), signer, publicKey,
        now: systemWallClock.wallNow(), ttlSeconds: manifestTtlSeconds, for: stored.for,
      });
    };
    let notifier: Notifier | undefined;
    const warn = (line: string): void => { server.emit('warning', line); };
    if (opts.notifyWebhook !== undefined || opts.smtp !== undefined) {
      notifier = new Notifier({
        webhook: opts.notifyWebhook, smtp: opts.smtp, emailTo: opts.notifyEmail, emailFrom: opts.notifyFrom, log: warn,
        firstRetryMs: notifyRetryMs,
      });
    }
    const jobStore = await JobStore.open(store);
    // 1 Mbit/s is 125 bytes a millisecond; none unless given (the console's max-rate may set one).
    const maxRate = new SharedRate(maxRateMbit === undefined ? Number.POSITIVE_INFINITY : maxRateMbit * 125, systemClock, undefined, warn);
    const jobs: JobServer = new JobServer({
      store: jobStore, stateDir: opts.stateDir, channel, clock: systemClock, wallClock: systemWallClock, notifier, sender: { peerTimeoutMs }, maxRate,
      approved: (id: string): boolean => server.registry.get(id) !== undefined,
      fetchFile: cluster && ((sha256, size, dest) => cluster.fetchFile(sha256, size, dest)),
      dropFile: cluster && ((sha256) => cluster.dropFile(sha256)),
      keepUploadsMs, keepJobsMs,
    });
    const server: NxtServer = new NxtServer({
      jobs, notifier, behindAfterMs: opts.behindAfter === undefined ? undefined : Number(opts.behindAfter) * 1000,
      stateDir: opts.stateDir, sealInThread: true, store, savedClients: await store.registrations(cluster?.name ?? ''), cluster, releases, prepareStored, autoUpdate: opts.autoUpdate === true, pieces: opts.pieces !== false,
      channel, clock: systemClock, wallClock: systemWallClock, devices, randomU32: () => randomBytes(4).readUInt32BE(0),
      enrollTokens: (opts.enrollToken ?? '').split(',').map((t) => t.trim()).filter((t) => t !== ''),
      renewMs, leaseMs: 3 * renewMs + 1000, sender: { peerTimeoutMs }, maxDatagram, history: { log: history, wallClock: systemWallClock, keepMs: keepHistoryMs }, multicast, maxRate,
    });
    const rollouts = new Rollouts({
      server, releases, prepare: prepareStored, wallClock: systemWallClock, store, saved: await store.campaigns(cluster?.name ?? ''), node: cluster?.name,
    });
    cluster?.takeCampaignsInto(rollouts);
    rollouts.on('event', (c: Campaign, e: CampaignEvent) => {
      if (e.kind !== 'paused') return;
      notifier?.notify({
        event: 'rollout-paused', device: `rollout ${c.id}`, reason: 'failures', detail: e.reason,
        release: `${c.record.spec.release.name} ${c.record.spec.release.version}`, at: systemWallClock.wallNow().toISOString(),
      });
    });
    const pub = join(opts.stateDir, PUBLIC_KEY_FILE);
    if (opts.publicDir !== undefined) {
      ensureDir(opts.publicDir);
      for (const f of [PUBLIC_KEY_FILE, IDENTITY_PUBLIC_FILE]) writeFileAtomic(join(opts.publicDir, f), readFileSync(join(opts.stateDir, f)), 0o644);
      mode.note(`public keys for clients copied to ${opts.publicDir}`);
    }
    await cluster?.attach(server);
    mode.note(`nxt server listening on UDP port ${endpoint.port}`);
    // The first push after a start must not sign with tweetnacl cold, nor hash into memory the
    // process maps for it (the sealing thread readies itself likewise): done now, while idle.
    setImmediate(() => {
      if (signer && !warmUpSigner()) mode.note('warning: Ed25519 signing fails RFC 8032\'s test vector', 'warn');
      warmHashBuffers();
    });
    if (cluster) mode.note(`node ${cluster.name} (number ${cluster.number}) of the fleet in ${store.where}; ${cluster.nodes().length} other node(s) alive`);
    if (multicast) mode.note(`pushes to several devices go to multicast group ${formatGroup(multicast.sender.group)} first (datagrams up to ${multicast.sender.maxDatagram} bytes)`);
    const fresh = [created && 'release key', newIdentity && 'identity key'].filter(Boolean).join(' and ');
    mode.note(`${fresh ? `created a new ${fresh}; ` : ''}clients trust ${pub} and ${join(opts.stateDir, IDENTITY_PUBLIC_FILE)} (key ${fingerprint(identity.publicKey)})`);
    if (!signer) mode.note(`no release key here (only its public half): push accepts modules signed offline (${PRESIGNED_SUFFIX})`);
    const { stop, inputEnded } = lifecycle('server', async () => { repl.close(); control.close(); rollouts.close(); await Promise.all(closers.map((c) => c())); await server.close(); await cluster?.close(); await store.close(); });
    const consoleOptions: ServerReplOptions = {
      server, signer, publicKey, clock: systemClock, wallClock: systemWallClock,
      input: process.stdin, output: process.stdout, headless: mode.headless, onExit: stop, onEnd: inputEnded, manifestTtlSeconds,
      history, releases, prepareStored, rollouts, historyFile: join(opts.stateDir, 'console-history'), jobs: { store: jobStore, stateDir: opts.stateDir, share: cluster && ((sha256, path, size) => cluster.shareFile(sha256, path, size)) }, tokens,
    };
    jobs.on('job-result', (job) => server.emit('job-result', job));
    jobs.on('report-queued', (job) => server.emit('report-queued', job));
    jobs.on('warning', (line: string) => server.emit('warning', line));
    jobs.on('notice', (line: string) => server.emit('notice', line));
    const repl = createServerRepl(consoleOptions);
    // After the console: the first sweep's lines are printed there.
    jobs.startSweeping();
    const commandsFor = (out: ControlOutput): ReturnType<typeof serverCommands> => serverCommands(consoleOptions, out.say, { reportEachClient: true, cwd: out.cwd, data: out.data, filesUnder: out.filesUnder });
    const control = await listenControl(opts.stateDir, commandsFor);
    if (http) {
      const api = createServer(apiHandler({
        tokens, random, stateDir: opts.stateDir, version: nxtVersion(), maxUploadBytes: httpMaxUploadBytes, commandsFor, typed: typedServerCommands(consoleOptions),
        webDir: fileURLToPath(new URL('../web/', import.meta.url)), subscribe: liveEvents(server, rollouts),
      }));
      api.headersTimeout = 10_000;
      api.requestTimeout = 0; // uploads of big modules take what they take; headers must come fast
      await new Promise<void>((res, rej) => {
        api.once('error', (err: NodeJS.ErrnoException) => rej(new NxtError(err.code ?? 'http-failed', `cannot serve the HTTP API on ${opts.http}: ${err.message}`)));
        api.listen(http.port, http.host, () => res());
      });
      const where = api.address() as AddressInfo;
      const base = `http://${where.address.includes(':') ? `[${where.address}]` : where.address}:${where.port}`;
      mode.note(`HTTP API on ${base}/api/v1 and the dashboard on ${base}/ (tokens: token create NAME)`);
      closers.push(() => new Promise<void>((res) => { api.close(() => res()); api.closeAllConnections(); }));
      // Uploads a day old go (a push or a job keeps its own copy): now, and every hour.
      const sweep = (): void => { sweepUploads(opts.stateDir, Date.now()); };
      sweep();
      const sweeping = setInterval(sweep, 3600_000);
      sweeping.unref();
      closers.push(async () => { clearInterval(sweeping); });
    }
    repl.start();
  } catch (err) {
    exitWithError('nxt-server', err);
  }
});

program
  .command('keygen')
  .description('create the release and identity keys in the state dir if there are none, and print where their public halves are')
  .addOption(new Option('-s, --state-dir <dir>', 'where the release key lives').env('NXT_STATE_DIR').default(DEFAULT_STATE_DIR))
  .option('--passphrase', 'encrypt the key with a passphrase (asked in the terminal, or NXT_KEY_PASSPHRASE)')
  .action((opts: { stateDir: string; passphrase?: boolean }) => {
    try {
      const random = (n: number): Uint8Array => randomBytes(n);
      const pub = join(opts.stateDir, PUBLIC_KEY_FILE);
      // The server's identity key (sessions) goes with the release key (modules): clients install both.
      loadOrCreateIdentity(opts.stateDir, random);
      if (!opts.passphrase) {
        const { created } = loadOrCreateReleaseKey(opts.stateDir, random);
        process.stdout.write(`${created ? 'created' : 'kept the existing'} release key; public key: ${pub}\n`);
        return;
      }
      if (isReleaseKeySealed(opts.stateDir)) throw new NxtError('usage', 'the release key is already encrypted');
      const passphrase = newPassphrase();
      const { created } = loadOrCreateReleaseKey(opts.stateDir, random, { sealNew: passphrase });
      if (!created) sealReleaseKey(opts.stateDir, random, passphrase);
      process.stdout.write(`${created ? 'created an encrypted' : 'encrypted the existing'} release key; public key: ${pub}\n`);
    } catch (err) {
      exitWithError('nxt-server', err);
    }
  });

program
  .command('sign <file>')
  .description(`sign a module with the release key here (e.g. on an offline machine), writing <file>${PRESIGNED_SUFFIX}; copy both to the server and push <file>`)
  .addOption(new Option('-s, --state-dir <dir>', 'where the release key lives').env('NXT_STATE_DIR').default(DEFAULT_STATE_DIR))
  .option('--version <x.y.z>', 'the release version (default: from the file name)')
  .option('--manifest-ttl <seconds>', 'how long the signed module stays installable', String(DEFAULT_MANIFEST_TTL_S))
  .option('--to <ids>', 'sign for these devices only (full 32-hex-digit ids, comma-separated); default: all')
  .option('--for <key=value>', 'what kind of device it is for: type=T, product=P, arch=A, channel=C (values comma-separated), agent=RANGE; repeatable', (v: string, all: string[]) => [...all, v], [] as string[])
  .action(async (file: string, opts: { stateDir: string; version?: string; manifestTtl: string; to?: string; for: string[] }) => {
    try {
      if (!/^\d+$/.test(opts.manifestTtl)) throw new NxtError('usage', `--manifest-ttl "${opts.manifestTtl}" is not a number of seconds`);
      const { signer } = loadOrCreateReleaseKey(opts.stateDir, (n) => randomBytes(n), { passphrase: askPassphrase('release key passphrase: ') });
      const release = await prepareRelease(file, {
        version: opts.version, signer, publicKey: signer.publicKey, now: systemWallClock.wallNow(), ttlSeconds: Number(opts.manifestTtl), for: parseFor(opts.for),
      });
      const targets: 'all' | string[] = opts.to === undefined ? 'all' : opts.to.split(',').map((t) => t.trim().toLowerCase());
      if (targets !== 'all' && (targets.length === 0 || targets.some((t) => !/^[0-9a-f]{32}$/.test(t)))) {
        throw new NxtError('usage', `--to takes full device ids (32 hex digits, as each client prints when it starts), comma-separated`);
      }
      const m = { ...release.manifest, targets };
      writeFileSync(file + PRESIGNED_SUFFIX, encodePresigned(signManifest(m, signer)));
      const whom = targets === 'all' ? 'all devices' : `${targets.length} device(s)`;
      process.stdout.write(`signed ${m.name} ${m.version.major}.${m.version.minor}.${m.version.patch} for ${whom}${m.for ? ` (${describeCompatibility(m.for)})` : ''}, valid until ${m.expires}: ${file}${PRESIGNED_SUFFIX}\n`);
    } catch (err) {
      exitWithError('nxt-server', err);
    }
  });

program
  .command('ctl <command...>')
  .description('run one console command (push, clients --json, versions, rollout latest, …) in the server running with this state dir')
  .addOption(new Option('-s, --state-dir <dir>', 'the running server\'s state dir (before the command)').env('NXT_STATE_DIR').default(DEFAULT_STATE_DIR))
  .option('--json', 'print one JSON document: {ok, status, command, output, errors, data} (before the command)')
  // Everything from the command on is the command's own (ctl clients --json).
  .passThroughOptions()
  .addHelpText('after', '\nRelative paths in the command are the caller\'s (ctl sends its working directory).\nExit status: 0 done; 1 the command failed (or a push failed on any device); 2 bad usage;\n130 or 143 interrupted (Ctrl-C, SIGTERM): a push goes on in the server ("cancel" stops it).')
  // Scripts reach runCtl through server.ts without loading this file; this is for `ctl --help`
  // and odd spellings of the flags.
  .action((words: string[], opts: { stateDir: string; json?: boolean }) => runCtl(opts.stateDir, words, opts.json === true));

/** The passphrase of an encrypted key: NXT_KEY_PASSPHRASE, else asked in the terminal (once). */
function askPassphrase(prompt: string): PassphraseSource {
  return () => {
    const fromEnv = process.env.NXT_KEY_PASSPHRASE;
    if (fromEnv !== undefined) return fromEnv;
    if (!process.stdin.isTTY) throw new NxtError('needs-passphrase', 'the release key is encrypted and there is no terminal to ask in: set NXT_KEY_PASSPHRASE');
    return readlineSync.question(prompt, { hideEchoBack: true });
  };
}

function newPassphrase(): string {
  const fromEnv = process.env.NXT_KEY_PASSPHRASE;
  if (fromEnv !== undefined) return fromEnv;
  if (!process.stdin.isTTY) throw new NxtError('needs-passphrase', 'no terminal to ask for a passphrase in: set NXT_KEY_PASSPHRASE');
  const first = readlineSync.question('new passphrase: ', { hideEchoBack: true });
  if (readlineSync.question('again: ', { hideEchoBack: true }) !== first) throw new NxtError('bad-passphrase', 'the passphrases differ');
  return first;
}

await program.parseAsync();

/** `--http 127.0.0.1:8080`, `--http [::1]:8080`, `--http :8080` (every address). */
function parseHttpAddress(text: string): { host: string; port: number } {
  const { host, port } = parseHostPort('--http', text);
  if (host !== '' && host !== 'localhost' && isIP(host) === 0) throw new NxtError('usage', `--http "${text}": the host must be an address (or localhost), e.g. 127.0.0.1:8080 or [::1]:8080`);
  return { host: host === '' ? '::' : host, port };
}
