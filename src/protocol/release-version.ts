import { NxtError } from '../errors.js';

/** The version used to order releases (rollback protection). Not the plugin's product version. */
export interface ReleaseVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

const MAX_COMPONENT = 0xffff_ffff;

export function parseReleaseVersion(text: string): ReleaseVersion {
  const m = /^(\d{1,10})\.(\d{1,10})(?:\.(\d{1,10}))?$/.exec(text.trim());
  if (!m) {
    throw new NxtError('bad-version', `"${text}" is not a version: use MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 2.0.1`);
  }
  const parts = [m[1], m[2], m[3] ?? '0'].map(Number);
  if (parts.some((p) => p > MAX_COMPONENT)) {
    throw new NxtError('bad-version', `"${text}" has a component above ${MAX_COMPONENT}`);
  }
  const [major = 0, minor = 0, patch = 0] = parts;
  return { major, minor, patch };
}

/**
 * The version a file name carries: `name_MAJOR_MINOR[_PATCH].mjs`, e.g. libfunctional_2_0.mjs → 2.0.0.
 * Returns undefined when the name carries none.
 */
export function releaseVersionFromFileName(fileName: string): ReleaseVersion | undefined {
  const m = /_(\d{1,10})_(\d{1,10})(?:_(\d{1,10}))?\.m?js$/.exec(fileName);
  if (!m) return undefined;
  return parseReleaseVersion(`${m[1]}.${m[2]}.${m[3] ?? '0'}`);
}

export function compareReleaseVersions(a: ReleaseVersion, b: ReleaseVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

export function formatReleaseVersion(v: ReleaseVersion): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}
