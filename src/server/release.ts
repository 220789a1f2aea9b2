/**
 * Turning a module file into a signed release: version from the operator or the file name,
 * size and sha256 from the bytes, a manifest signed with the release key.
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';
import { CHUNKS_HEADER_BYTES, chunkEntryBytes, WIDE_CHUNK_BYTES, WIDE_DATAGRAM_BYTES } from '../protocol/envelope.js';
import { LARGE_CHUNK_BYTES, PIECE_CHUNK_BYTES } from '../net/fragments.js';
import { CLIENT_ID_BYTES, MAX_CHUNK_BYTES } from '../protocol/messages.js';
import { parseReleaseVersion, releaseVersionFromFileName, type ReleaseVersion } from '../protocol/release-version.js';
import { encodeManifest, MAX_MODULE_BYTES, signManifest, verifyManifest, type Manifest, type SignedManifest } from '../security/manifest.js';
import type { Signer } from '../security/release-key.js';
import type { Compatibility } from '../security/compatibility.js';
import { HashThread, HashThreadGone } from '../files/hash-thread.js';
import { fileIdentity, identityOf } from '../util/file-identity.js';
import { changedWhileHashed, hashSteadyFile } from '../util/hash-file.js';

export interface Release {
  readonly path: string;
  /** What every client's manifest says, but for its targets and chunk size. */
  readonly manifest: Manifest;
  /** A module signed offline keeps the chunk size it was signed with. */
  readonly presigned: boolean;
  /** The file as it was hashed (util/file-identity.ts): sealing refuses any other. */
  readonly identity: string;
  /** The manifest signed for one client only (so it cannot be replayed to another), with the
   *  chunk size chosen for its path (a pre-signed one keeps its own). */
  signedFor(clientIdHex: string, chunkSize: number): SignedManifest;
}

/** Chunk sizes a release is sealed in: the one that fits a 1500-byte MTU whole, a large one
 *  (LARGE_CHUNK_BYTES, 8650: net/fragments.ts) for paths that carry big datagrams (jumbo frames,
 *  the server's own LAN), where a device opens a sealed chunk in ~10 µs for 8 KiB against ~7 µs
 *  for 1.4 KiB (node:crypto's setup dominates: bench/crypto.ts), and a wide one
 *  (WIDE_CHUNK_BYTES, 65,458: protocol/envelope.ts) for paths that carry 64 KiB datagrams whole
 *  (loopback). */
export const SMALL_CHUNK_BYTES = MAX_CHUNK_BYTES;

/** What of a release decides its chunk size beside the path: signed offline, it keeps its own. */
export type ChunkSizeRelease = Pick<Release, 'presigned'> & { readonly manifest: Pick<Release['manifest'], 'chunkSize'> };

/** The chunk size for a path whose datagrams may be up to `maxDatagram` bytes, and which may
 *  take large chunks in pieces when they do not fit (PIECE_CHUNK_BYTES, 8564), or wide chunks
 *  when it carries a datagram of one whole (WIDE_CHUNK_BYTES: loopback, unless `--max-datagram`
 *  says less) to a device that takes them (`wide`: its inventory says so). */
export function chunkSizeFor(release: ChunkSizeRelease, maxDatagram: number, pieces = false, wide = false): number {
  if (release.presigned) return release.manifest.chunkSize;
  if (wide && maxDatagram >= WIDE_DATAGRAM_BYTES) return WIDE_CHUNK_BYTES;
  if (maxDatagram >= CHUNKS_HEADER_BYTES + chunkEntryBytes(LARGE_CHUNK_BYTES)) return LARGE_CHUNK_BYTES;
  return pieces ? PIECE_CHUNK_BYTES : SMALL_CHUNK_BYTES;
}

/** How long a signed push stays installable by default: a week covers devices that are offline
 *  over a weekend; the operator can push again to re-sign. */
export const DEFAULT_MANIFEST_TTL_S = 7 * 24 * 3600;

/** A module signed offline travels with this file beside it: `<module>.nxt-signed`. */
export const PRESIGNED_SUFFIX = '.nxt-signed';

export async function prepareRelease(
  path: string,
  options: {
    version?: string; signer?: Signer; publicKey: Uint8Array; now: Date; ttlSeconds?: number; chunkSize?: number; for?: Compatibility;
    /** Where a large module is hashed (tests give their own). */
    hashThread?: HashThread;
  },
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
  if (existsSync(path + PRESIGNED_SUFFIX)) return presignedRelease(path, size, options.publicKey, options.version, options.hashThread);
  if (!options.signer) {
    throw new NxtError('no-signer', `this server keeps no release key: sign ${basename(path)} offline (nxt-server sign) and put the ${PRESIGNED_SUFFIX} file beside it`);
  }
  const { signer } = options;
  const name = basename(path);
  let version: ReleaseVersion | undefined;
  if (options.version !== undefined) version = parseReleaseVersion(options.version);
  else version = releaseVersionFromFileName(name);
  if (!version) {
    throw new NxtError('no-version', `cannot tell the version of ${name}: name it like name_MAJOR_MINOR[_PATCH].mjs or use push ${path} --version X.Y.Z`);
  }
  const { sha256, identity } = await hashModule(path, size, options.hashThread);
  const manifest: Manifest = {
    name, version, size, sha256, chunkSize: options.chunkSize ?? MAX_CHUNK_BYTES, created: options.now.toISOString(),
    expires: new Date(options.now.getTime() + (options.ttlSeconds ?? DEFAULT_MANIFEST_TTL_S) * 1000).toISOString(),
    targets: 'all',
    ...(options.for === undefined ? {} : { for: options.for }),
  };
  // Fail now, not per client, if it cannot be signed: checked as a client's copy would be (its
  // id as the target), without the cost of a signature no one receives.
  encodeManifest({ ...manifest, targets: ['0'.repeat(2 * CLIENT_ID_BYTES)] });
  return { path, manifest, presigned: false, identity, signedFor: (clientIdHex, chunkSize) => signManifest({ ...manifest, chunkSize, targets: [clientIdHex] }, signer) };
}

/** The manifest and signature of a module signed elsewhere, as `nxt-server sign` writes them. */
export function encodePresigned(signed: SignedManifest): string {
  return `${JSON.stringify({ manifest: Buffer.from(signed.bytes).toString('base64'), signature: Buffer.from(signed.signature).toString('base64') })}\n`;
}

/**
 * A module signed offline: the server checks the signature against the release key's public half
 * and the file against the manifest before offering it, so a wrong or stale sidecar fails here
 * with a reason instead of on every device.
 */
async function presignedRelease(path: string, size: number, publicKey: Uint8Array, version: string | undefined, hashThread?: HashThread): Promise<Release> {
  const sidecar = path + PRESIGNED_SUFFIX;
  let signed: SignedManifest;
  try {
    const raw = JSON.parse(readFileSync(sidecar, 'utf8')) as { manifest?: unknown; signature?: unknown };
    if (typeof raw.manifest !== 'string' || typeof raw.signature !== 'string') throw new Error('fields missing');
    const bytes = new Uint8Array(Buffer.from(raw.manifest, 'base64'));
    const signature = new Uint8Array(Buffer.from(raw.signature, 'base64'));
    signed = { manifest: verifyManifest(bytes, signature, publicKey), bytes, signature };
  } catch (err) {
    const why = err instanceof NxtError ? err.message : `not a ${PRESIGNED_SUFFIX} file (${errorMessage(err)})`;
    throw new NxtError('bad-presigned', `${sidecar}: ${why}`, { cause: err });
  }
  const m = signed.manifest;
  if (version !== undefined) throw new NxtError('usage', `${basename(path)} is pre-signed as version ${m.version.major}.${m.version.minor}.${m.version.patch}; --version cannot change it`);
  const { sha256, identity } = await hashModule(path, size, hashThread);
  if (m.size !== size || m.sha256 !== sha256) {
    throw new NxtError('bad-presigned', `${basename(path)} does not match its signed manifest (changed after signing?)`);
  }
  return { path, manifest: m, presigned: true, identity, signedFor: () => signed };
}

/** Modules this large are hashed in the hashing thread (files/hash-thread.ts). */
const HASH_THREAD_MIN_BYTES = 4 * 1024 * 1024;
/** The server's hashing thread ends after this long without a module to hash: starting one took
 *  60-90 ms here, more than it saves a push, and pushes come in runs (a device's keeps ending
 *  after 10 s: it has less memory to spare). */
const SERVER_HASH_THREAD_IDLE_MS = 10 * 60_000;
let serverHashThread: HashThread | undefined;

/** The module's sha256 and identity, hashed while it stayed the file of `size` bytes it was
 *  when its size was checked. */
export async function hashModule(path: string, size: number, thread?: HashThread): Promise<{ sha256: string; identity: string }> {
  let hashed;
  try {
    const hashing = size < HASH_THREAD_MIN_BYTES ? undefined : thread ?? (serverHashThread ??= new HashThread(undefined, SERVER_HASH_THREAD_IDLE_MS));
    hashed = (hashing ? await hashInThread(path, hashing) : undefined) ?? await hashSteadyFile(path);
  } catch (err) {
    if (err instanceof NxtError) throw err;
    throw new NxtError('no-such-file', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (hashed.size !== size) throw new NxtError('module-changed', `${path} changed while it was read (${size} bytes, then ${hashed.size}): try again once it is whole`);
  return hashed;
}

/**
 * A large module hashed in the hashing thread, which reads it with blocking reads of its own.
 * Here, with libuv's pool reading for it while the sealing thread seals the same file, a 128 MiB
 * module took 120-155 ms to hash on the main thread (the push's first chunk waits for it: the
 * manifest is signed with its digest); in the thread, typing push to the offer went from 146 to
 * 122 ms (medians of 18), and the main thread stays free for the devices it serves. The same
 * guarantee as hashSteadyFile: the file's identity (util/file-identity.ts) before the first read
 * and after the last must agree. undefined: no thread to hash it (hash it here).
 */
async function hashInThread(path: string, thread: HashThread): Promise<{ sha256: string; size: number; identity: string } | undefined> {
  // The thread refuses a link at the name it opens: it is given the file's own name.
  const real = realpathSync(path);
  const st = statSync(real, { bigint: true });
  if (!st.isFile()) return undefined;
  const identity = identityOf(st);
  const size = Number(st.size);
  const followed = thread.follow(real, `${st.dev}:${st.ino}`);
  let sha256: string;
  try {
    followed.written(size);
    sha256 = await followed.digest(size);
  } catch (err) {
    if (err instanceof HashThreadGone) return undefined;
    // Shorter than it was, or gone: a file still being written is the likely cause.
    if (fileIdentity(real)?.id !== identity) throw changedWhileHashed(path);
    throw err;
  }
  if (fileIdentity(real)?.id !== identity) throw changedWhileHashed(path);
  return { sha256, size, identity };
}
