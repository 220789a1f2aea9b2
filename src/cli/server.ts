#!/usr/bin/env node
/** nxt-server: parse flags, wire the parts, run. */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Command } from 'commander';
import { openUdpEndpoint } from '../net/endpoint.js';
import { loadOrCreateReleaseKey, PUBLIC_KEY_FILE } from '../security/release-key.js';
import { NxtError } from '../errors.js';
import { DEFAULT_MANIFEST_TTL_S } from '../server/release.js';
import { NxtServer } from '../server/server.js';
import { createServerRepl } from '../server/server-repl.js';
import { systemClock, systemWallClock } from '../util/clock.js';
import { exitWithError, parsePort, parsePositiveMs } from './exit-codes.js';
import { lifecycle } from './lifecycle.js';

const DEFAULT_STATE_DIR = 'state/server';

const program = new Command('nxt-server')
  .description('push signed plugin modules to nxt clients over UDP')
  .option('-p, --port <port>', 'UDP port to listen on (IPv4 and IPv6)', '9000')
  .option('-s, --state-dir <dir>', 'where the release key and server state live', DEFAULT_STATE_DIR)
  .option('--peer-timeout <ms>', 'fail a push to a client silent this long', '10000')
  .option('--renew <ms>', 'how often clients renew their registration', '10000')
  .option('--manifest-ttl <seconds>', 'how long a signed push stays installable; clients refuse it after that', String(DEFAULT_MANIFEST_TTL_S))
  // Options after a subcommand belong to it (keygen --state-dir D).
  .enablePositionalOptions()
  .showHelpAfterError();

program.action(async (opts: { port: string; stateDir: string; peerTimeout: string; renew: string; manifestTtl: string }) => {
  try {
    const port = parsePort(opts.port);
    const peerTimeoutMs = parsePositiveMs(opts.peerTimeout);
    const renewMs = parsePositiveMs(opts.renew);
    if (!/^\d+$/.test(opts.manifestTtl)) throw new NxtError('usage', `--manifest-ttl "${opts.manifestTtl}" is not a number of seconds`);
    const manifestTtlSeconds = Number(opts.manifestTtl);
    const { signer, created } = loadOrCreateReleaseKey(opts.stateDir, (n) => randomBytes(n));
    const endpoint = await openUdpEndpoint({ port });
    const server = new NxtServer({
      endpoint, clock: systemClock, randomU32: () => randomBytes(4).readUInt32BE(0),
      renewMs, leaseMs: 3 * renewMs + 1000, sender: { peerTimeoutMs },
    });
    const pub = join(opts.stateDir, PUBLIC_KEY_FILE);
    process.stdout.write(`nxt server listening on UDP port ${endpoint.port}\n`);
    process.stdout.write(`${created ? 'created a new release key; ' : ''}clients trust ${pub}\n`);
    const { stop, inputEnded } = lifecycle('server', async () => { repl.close(); await server.close(); });
    const repl = createServerRepl({
      server, signer, clock: systemClock, wallClock: systemWallClock,
      input: process.stdin, output: process.stdout, onExit: stop, onEnd: inputEnded, manifestTtlSeconds,
    });
    repl.start();
  } catch (err) {
    exitWithError('nxt-server', err);
  }
});

program
  .command('keygen')
  .description('create the release key in the state dir if there is none, and print where its public half is')
  .option('-s, --state-dir <dir>', 'where the release key lives', DEFAULT_STATE_DIR)
  .action((opts: { stateDir: string }) => {
    try {
      const { created } = loadOrCreateReleaseKey(opts.stateDir, (n) => randomBytes(n));
      process.stdout.write(`${created ? 'created' : 'kept the existing'} release key; public key: ${join(opts.stateDir, PUBLIC_KEY_FILE)}\n`);
    } catch (err) {
      exitWithError('nxt-server', err);
    }
  });

await program.parseAsync();
