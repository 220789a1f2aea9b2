#!/usr/bin/env node
/** nxt-client: parse flags, wire the parts, run. */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { Command } from 'commander';
import { ClientAgent, DEFAULT_MAX_MODULE_BYTES } from '../client/agent.js';
import { createClientRepl } from '../client/client-repl.js';
import { NxtError } from '../errors.js';
import { CLIENT_ID_BYTES } from '../protocol/messages.js';
import { openUdpEndpoint } from '../net/endpoint.js';
import { ModuleStore } from '../plugin/module-store.js';
import { formatProductVersion } from '../plugin/plugin-shape.js';
import { readPublicKey } from '../security/release-key.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { systemClock, systemWallClock } from '../util/clock.js';
import { lockDir } from '../util/dir-lock.js';
import { exitWithError, parsePort } from './exit-codes.js';
import { lifecycle } from './lifecycle.js';

const program = new Command('nxt-client')
  .description('the nxt device agent: registers with a server and hot-loads signed plugin modules')
  .requiredOption('--server <ip>', 'server IP address (IPv4 or IPv6)')
  .requiredOption('-p, --port <port>', 'server UDP port')
  .option('--trust <file>', "the server's public release key", 'state/server/release.pub')
  .option('-d, --data-dir <dir>', 'where this client keeps its id and modules', 'state/client')
  .option('--max-module-bytes <n>', 'refuse modules larger than this (V8 cannot load more than 512 MiB)', String(DEFAULT_MAX_MODULE_BYTES))
  .showHelpAfterError();

program.action(async (opts: { server: string; port: string; trust: string; dataDir: string; maxModuleBytes: string }) => {
  try {
    if (isIP(opts.server) === 0) throw new NxtError('usage', `"${opts.server}" is not an IP address`);
    const port = parsePort(opts.port);
    if (port === 0) throw new NxtError('usage', 'the server port cannot be 0');
    const maxModuleBytes = Number(opts.maxModuleBytes);
    if (!/^\d+$/.test(opts.maxModuleBytes) || maxModuleBytes < 1) throw new NxtError('usage', `--max-module-bytes "${opts.maxModuleBytes}" is not a positive number of bytes`);
    const trustedKey = readPublicKey(opts.trust);
    const store = new ModuleStore(opts.dataDir);
    const unlock = lockDir(opts.dataDir, 'client');
    process.on('exit', unlock);
    const clientId = loadOrCreateClientId(opts.dataDir);
    const { active, warning } = await store.loadActive();
    const endpoint = await openUdpEndpoint({ port: 0, host: isIP(opts.server) === 6 ? '::' : '0.0.0.0' });
    const agent = new ClientAgent({
      endpoint, server: { address: opts.server, port }, clientId, store, trustedKey, clock: systemClock, wallClock: systemWallClock, initial: active, maxModuleBytes,
    });
    if (warning) process.stdout.write(`warning: ${warning}\n`);
    process.stdout.write(`nxt client ${Buffer.from(clientId).toString('hex').slice(0, 12)} → ${opts.server}:${port}\n`);
    process.stdout.write(`${formatProductVersion(active.product)}\n`);
    const { stop, inputEnded } = lifecycle('client', async () => { repl.close(); await agent.stop(); });
    const repl = createClientRepl({ agent, input: process.stdin, output: process.stdout, onExit: stop, onEnd: inputEnded });
    agent.start();
    repl.start();
  } catch (err) {
    exitWithError('nxt-client', err);
  }
});

/** The device's identity: 16 random bytes, created once and kept. */
function loadOrCreateClientId(dataDir: string): Uint8Array {
  const path = join(dataDir, 'client-id');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (existsSync(path)) {
    const hex = readFileSync(path, 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(hex)) return new Uint8Array(Buffer.from(hex, 'hex'));
    throw new NxtError('bad-state', `${path} is corrupt: delete it to give this client a new identity`);
  }
  const id = randomBytes(CLIENT_ID_BYTES);
  writeFileAtomic(path, `${id.toString('hex')}\n`);
  return new Uint8Array(id);
}

await program.parseAsync();
