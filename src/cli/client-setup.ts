/**
 * `nxt-client setup --server HOST:PORT --trust release.pub [--server-key identity.pub]`: give a
 * device its server. The server's two public keys (release.pub signs modules, identity.pub
 * answers handshakes) are checked and copied next to the config file (trust/), and the config
 * file gets the server, the port and the keys' paths; its other settings stay. An installed
 * client (the Debian package) then starts as a service: systemctl enable --now nxt-client.
 */
import { chownSync, copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { NxtError } from '../errors.js';
import { readPublicKey } from '../security/release-key.js';
import { fingerprint, IDENTITY_PUBLIC_FILE, readIdentityPublic } from '../session/identity.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { parseHostPort } from './exit-codes.js';

export interface SetupOptions {
  readonly server: string;
  readonly trust: string;
  readonly serverKey?: string;
  readonly config: string;
  readonly enrollToken?: string;
}

/** "host:9000", "10.0.0.5:9000", "[fd00::1]:9000": a host is needed, and a port that is not 0. */
export function parseServerAddress(text: string): { host: string; port: number } {
  const { host, port } = parseHostPort('--server', text);
  if (host === '') throw new NxtError('usage', `--server "${text}" needs the server's host name or address`);
  if (port === 0) throw new NxtError('usage', 'the server port cannot be 0');
  return { host, port };
}

export function setupClient(o: SetupOptions): string[] {
  const { host, port } = parseServerAddress(o.server);
  const releaseKey = readPublicKey(o.trust);
  const identityFile = o.serverKey ?? join(dirname(o.trust), IDENTITY_PUBLIC_FILE);
  const identityKey = readIdentityPublic(identityFile);
  const config = resolve(o.config);
  const keysDir = join(dirname(config), 'trust');
  mkdirSync(keysDir, { recursive: true, mode: 0o755 });
  const trust = join(keysDir, 'release.pub');
  const serverKey = join(keysDir, IDENTITY_PUBLIC_FILE);
  if (resolve(o.trust) !== trust) copyFileSync(o.trust, trust);
  if (resolve(identityFile) !== serverKey) copyFileSync(identityFile, serverKey);
  let settings: Record<string, unknown> = {};
  if (existsSync(config)) {
    try {
      settings = JSON.parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new NxtError('bad-config', `${config} is not JSON (${(err as Error).message}): fix or remove it, then run setup again`);
    }
  }
  settings = { ...settings, server: host, port, trust, serverKey, ...(o.enrollToken === undefined ? {} : { enrollToken: o.enrollToken }) };
  // Readable by the service's user; an enrollment token in it is a secret of the fleet's, so
  // then only by that user's group (the package's nxt-client, when there is one).
  const secret = typeof settings.enrollToken === 'string';
  writeFileAtomic(config, `${JSON.stringify(settings, null, 2)}\n`, secret ? 0o640 : 0o644);
  const gid = secret ? groupId('nxt-client') : undefined;
  if (gid !== undefined) chownSync(config, 0, gid);
  return [
    `server ${host}:${port}`,
    `modules must be signed by release key ${fingerprint(releaseKey)} (${trust})`,
    `sessions only with identity key ${fingerprint(identityKey)} (${serverKey})`,
    `wrote ${config}`,
  ];
}

/** A group's id from /etc/group, when it exists and this process may give files to it (root). */
function groupId(name: string): number | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
    const gid = Number(line?.split(':')[2]);
    return Number.isInteger(gid) ? gid : undefined;
  } catch {
    return undefined;
  }
}
