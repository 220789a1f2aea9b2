/**
 * Turning a module file into a signed release: version from the operator or the file name,
 * size and sha256 from the bytes, a manifest signed with the release key.
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';
import { MAX_CHUNK_BYTES } from '../protocol/messages.js';
import { parseReleaseVersion, releaseVersionFromFileName, type ReleaseVersion } from '../protocol/release-version.js';
import { MAX_MODULE_BYTES, signManifest, type Manifest, type SignedManifest } from '../security/manifest.js';
import type { Signer } from '../security/release-key.js';

export interface Release {
  readonly path: string;
  /** What every client's manifest says, but for its targets. */
  readonly manifest: Manifest;
  /** The manifest signed for one client only (so it cannot be replayed to another). */
  signedFor(clientIdHex: string): SignedManifest;
}

/** How long a signed push stays installable by default: a week covers devices that are offline
 *  over a weekend; the operator can push again to re-sign. */
export const DEFAULT_MANIFEST_TTL_S = 7 * 24 * 3600;

export async function prepareRelease(
  path: string,
  options: { version?: string; signer: Signer; now: Date; ttlSeconds?: number; chunkSize?: number },
): Promise<Release> {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new NxtError('not-a-file', `${path} is not a file`);
    size = st.size;
  } catch (err) {
    if (err instanceof NxtError) throw err;
    throw new NxtError('no-such-file', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (size === 0) throw new NxtError('empty-module', `${path} is empty`);
  if (size > MAX_MODULE_BYTES) throw new NxtError('module-too-large', `${path} is larger than ${MAX_MODULE_BYTES} bytes`);
  const name = basename(path);
  let version: ReleaseVersion | undefined;
  if (options.version !== undefined) version = parseReleaseVersion(options.version);
  else version = releaseVersionFromFileName(name);
  if (!version) {
    throw new NxtError('no-version', `cannot tell the version of ${name}: name it like name_MAJOR_MINOR[_PATCH].mjs or use push ${path} --version X.Y.Z`);
  }
  const sha256 = await hashFile(path);
  const manifest: Manifest = {
    name, version, size, sha256, chunkSize: options.chunkSize ?? MAX_CHUNK_BYTES, created: options.now.toISOString(),
    expires: new Date(options.now.getTime() + (options.ttlSeconds ?? DEFAULT_MANIFEST_TTL_S) * 1000).toISOString(),
    targets: 'all',
  };
  signManifest(manifest, options.signer); // fail now, not per client, if it cannot be signed
  return { path, manifest, signedFor: (clientIdHex) => signManifest({ ...manifest, targets: [clientIdHex] }, options.signer) };
}

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => hash.update(d))
      .on('error', (err) => reject(new NxtError('no-such-file', `cannot read ${path}: ${errorMessage(err)}`, { cause: err })))
      .on('end', () => resolve(hash.digest('hex')));
  });
}
