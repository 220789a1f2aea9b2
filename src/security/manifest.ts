/**
 * The signed description of a module. The signature covers the manifest's exact bytes (UTF-8
 * JSON); a client verifies those bytes first and only then parses them, so nothing unverified
 * is ever interpreted.
 */
import { NxtError } from '../errors.js';
import { MAX_MANIFEST_BYTES } from '../protocol/messages.js';
import { MAX_MANIFEST_CHUNK_BYTES } from '../protocol/envelope.js';
import { formatReleaseVersion, parseReleaseVersion, type ReleaseVersion } from '../protocol/release-version.js';
import { verifySignature, type Signer } from './release-key.js';
import { parseCompatibility, type Compatibility } from './compatibility.js';

/** Modules above this size are refused before a byte is sent (endless-data attack). */
export const MAX_MODULE_BYTES = 4 * 1024 ** 3;
const MAX_NAME_CHARS = 128;

export interface Manifest {
  readonly name: string;
  readonly version: ReleaseVersion;
  readonly size: number;
  readonly sha256: string;
  readonly chunkSize: number;
  /** When it was signed (ISO 8601), for the operator's records. */
  readonly created: string;
  /** After this instant (ISO 8601) clients refuse it: a replayed old offer cannot hold a device on
   *  an old release forever (TUF's freeze attack). */
  readonly expires: string;
  /** The client ids (32 hex digits) this manifest is for, or 'all': a manifest captured on its
   *  way to one device cannot install on another (TUF's mix-and-match attack). */
  readonly targets: 'all' | readonly string[];
  /** What kind of device it is for (security/compatibility.ts); absent: every kind. A device
   *  refuses a release not for it, whoever offers it. */
  readonly for?: Compatibility;
}

export interface SignedManifest {
  readonly manifest: Manifest;
  readonly bytes: Uint8Array;
  readonly signature: Uint8Array;
}

/** Mix-and-match attack: is this manifest meant for the client with this id? */
export function isTargeted(m: Pick<Manifest, 'targets'>, clientIdHex: string): boolean {
  return m.targets === 'all' || m.targets.includes(clientIdHex);
}

/** Freeze attack: is this manifest past its expiry at `now`? */
export function isExpired(m: Pick<Manifest, 'expires'>, now: Date): boolean {
  return Date.parse(m.expires) <= now.getTime();
}

export function chunkCount(m: Pick<Manifest, 'size' | 'chunkSize'>): number {
  return Math.max(1, Math.ceil(m.size / m.chunkSize));
}

/** The bytes a manifest is signed as; throws what a signature of them would (too large for one
 *  datagram, or not what a client parses). */
export function encodeManifest(manifest: Manifest): Uint8Array {
  const bytes = new Uint8Array(Buffer.from(JSON.stringify({
    type: 'nxt-manifest/1',
    name: manifest.name,
    version: formatReleaseVersion(manifest.version),
    size: manifest.size,
    sha256: manifest.sha256,
    chunkSize: manifest.chunkSize,
    created: manifest.created,
    expires: manifest.expires,
    targets: manifest.targets,
    // Only when given: manifests without it read (and verify) as they always did.
    ...(manifest.for === undefined ? {} : { for: manifest.for }),
  })));
  if (bytes.length > MAX_MANIFEST_BYTES) throw new NxtError('manifest-too-large', `manifest (${bytes.length} bytes) does not fit one datagram (${MAX_MANIFEST_BYTES}): shorten the module name or its --for lists`);
  parseManifest(bytes); // never sign what a client would refuse to parse
  return bytes;
}

export function signManifest(manifest: Manifest, signer: Signer): SignedManifest {
  const bytes = encodeManifest(manifest);
  return { manifest, bytes, signature: signer.sign(bytes) };
}

/**
 * A release approval: the release key's signature over a release's identity (name, version,
 * size, SHA-256, what it is for), under a type of its own. A node that pushes signs one and puts
 * it in the shared database with the release's bytes; another node, before it signs manifests
 * for those bytes (to push to its devices, or in a campaign it took over), checks it. So write
 * access to the database is not a way to have a node sign code. A device never takes it for a
 * manifest: its type is not nxt-manifest/1.
 */
export type ApprovedRelease = Pick<Manifest, 'name' | 'version' | 'size' | 'sha256' | 'for'>;

function approvalBytes(r: ApprovedRelease): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify({
    type: 'nxt-release-approval/1', name: r.name, version: formatReleaseVersion(r.version), size: r.size, sha256: r.sha256,
    ...(r.for === undefined ? {} : { for: r.for }),
  })));
}

export function signApproval(r: ApprovedRelease, signer: Signer): Uint8Array {
  return signer.sign(approvalBytes(r));
}

export function verifyApproval(r: ApprovedRelease, signature: Uint8Array, trusted: Uint8Array): boolean {
  return verifySignature(approvalBytes(r), signature, trusted);
}

/**
 * Verify, then parse. Throws NxtError 'bad-signature' (arbitrary-install attack: only the release
 * key can introduce a module) or 'bad-manifest'.
 */
export function verifyManifest(bytes: Uint8Array, signature: Uint8Array, trusted: Uint8Array): Manifest {
  if (!verifySignature(bytes, signature, trusted)) {
    throw new NxtError('bad-signature', 'manifest signature does not verify against the trusted server key');
  }
  return parseManifest(bytes);
}

export function parseManifest(bytes: Uint8Array): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new NxtError('bad-manifest', 'manifest is not JSON');
  }
  const o = raw as Record<string, unknown>;
  const bad = (what: string): never => { throw new NxtError('bad-manifest', `manifest ${what}`); };
  if (typeof o !== 'object' || o === null || o.type !== 'nxt-manifest/1') bad('has an unknown type');
  const { name, version, size, sha256, chunkSize, created, expires, targets } = o;
  const compatibility = parseCompatibility(o.for);
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_CHARS) bad('name is missing or too long');
  if (typeof version !== 'string') bad('version is missing');
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1 || size > MAX_MODULE_BYTES) bad(`size must be 1..${MAX_MODULE_BYTES}`);
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) bad('sha256 must be 64 lowercase hex digits');
  if (typeof chunkSize !== 'number' || !Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_MANIFEST_CHUNK_BYTES) bad(`chunkSize must be 1..${MAX_MANIFEST_CHUNK_BYTES}`);
  if (typeof created !== 'string') bad('created is missing');
  if (typeof expires !== 'string' || Number.isNaN(Date.parse(expires))) bad('expires is missing or not a date');
  if (targets !== 'all' && !(Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string' && /^[0-9a-f]{32}$/.test(t)))) {
    bad('targets must be "all" or a list of client ids');
  }
  let parsed: ReleaseVersion;
  try {
    parsed = parseReleaseVersion(version as string);
  } catch {
    return bad('version is not MAJOR.MINOR.PATCH');
  }
  return {
    name: name as string, version: parsed, size: size as number, sha256: sha256 as string,
    chunkSize: chunkSize as number, created: created as string, expires: expires as string,
    targets: targets as 'all' | string[],
    ...(compatibility === undefined ? {} : { for: compatibility }),
  };
}
