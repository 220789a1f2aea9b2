/**
 * What a release is for (in its signed manifest) and what a device is (it says so when it
 * registers): a release is sent only to devices it is for, and a device refuses one that is not
 * for it, whoever offers it (Mender's `device_type` in every artifact; TUF's custom target data).
 *
 *   push module_2_0.mjs --for type=gateway --for arch=arm64,x64 --for agent=">=0.1.0 <2.0.0"
 *
 * Each key present must match: `type`, `product` (the running plugin's productName), `arch`
 * (Node's process.arch) and `channel` list what is accepted; `agent` is a version range of the
 * nxt agent (space-separated comparisons, all of which must hold). Absent keys do not restrict.
 */
import { NxtError } from '../errors.js';

export const COMPATIBILITY_KEYS = ['type', 'product', 'arch', 'channel', 'agent'] as const;
export type CompatibilityKey = (typeof COMPATIBILITY_KEYS)[number];

/** A release's requirements: lists of accepted values, or for `agent` a range. */
export interface Compatibility {
  readonly type?: readonly string[];
  readonly product?: readonly string[];
  readonly arch?: readonly string[];
  readonly channel?: readonly string[];
  readonly agent?: string;
}

/** What a device says it is. */
export interface DeviceFacts {
  readonly type?: string;
  readonly product?: string;
  readonly arch?: string;
  readonly channel?: string;
  readonly agent?: string;
}

const VALUE = /^[A-Za-z0-9._-]{1,64}$/;
const COMPARISON = /^(>=|<=|>|<|=)?(\d+)\.(\d+)\.(\d+)$/;

/** `--for key=value[,value…]` flags (repeatable) into a Compatibility; throws NxtError 'usage'. */
export function parseFor(flags: readonly string[]): Compatibility | undefined {
  if (flags.length === 0) return undefined;
  const out: Record<string, string[] | string> = {};
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    const key = flag.slice(0, eq) as CompatibilityKey;
    const value = flag.slice(eq + 1).trim();
    if (eq < 1 || !COMPATIBILITY_KEYS.includes(key)) throw new NxtError('usage', `--for "${flag}": expected ${COMPATIBILITY_KEYS.join('|')}=VALUE[,VALUE…]`);
    if (key in out) throw new NxtError('usage', `--for ${key} given twice: list the values once, comma-separated`);
    if (key === 'agent') {
      checkRange(value);
      out.agent = value;
    } else {
      const values = value.split(',').map((v) => v.trim()).filter((v) => v !== '');
      if (values.length === 0 || values.some((v) => !VALUE.test(v))) throw new NxtError('usage', `--for ${key}: values are 1-64 letters, digits, ".", "_" or "-", comma-separated`);
      out[key] = values;
    }
  }
  return out as Compatibility;
}

/** A range like ">=0.1.0 <2.0.0"; throws NxtError 'usage'. */
function checkRange(range: string): void {
  const parts = range.split(/\s+/).filter((p) => p !== '');
  if (parts.length === 0 || parts.some((p) => !COMPARISON.test(p))) throw new NxtError('usage', `--for agent="${range}": expected comparisons like ">=0.1.0 <2.0.0"`);
}

/** Check a manifest's `for` field as parsed from JSON; throws NxtError 'bad-manifest'. */
export function parseCompatibility(raw: unknown): Compatibility | undefined {
  if (raw === undefined) return undefined;
  const bad = (): never => { throw new NxtError('bad-manifest', 'manifest "for" must map type, product, arch, channel to lists and agent to a range'); };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad();
  const o = raw as Record<string, unknown>;
  for (const [key, value] of Object.entries(o)) {
    if (!COMPATIBILITY_KEYS.includes(key as CompatibilityKey)) bad();
    if (key === 'agent') {
      if (typeof value !== 'string') bad();
      try { checkRange(value as string); } catch { bad(); }
    } else if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string' && VALUE.test(v))) {
      bad();
    }
  }
  return o as Compatibility;
}

/** Why `release` is not for a device with these facts, or undefined when it is. */
export function mismatch(release: Compatibility | undefined, device: DeviceFacts): string | undefined {
  if (!release) return undefined;
  for (const key of ['type', 'product', 'arch', 'channel'] as const) {
    const accepted = release[key];
    if (accepted === undefined) continue;
    const has = device[key];
    if (has === undefined || !accepted.includes(has)) return `it is for ${key} ${accepted.join(' or ')}; this device's ${key} is ${has ?? 'not set'}`;
  }
  if (release.agent !== undefined && !inRange(device.agent, release.agent)) {
    return `it needs agent ${release.agent}; this device runs ${device.agent ?? 'an unknown version'}`;
  }
  return undefined;
}

function inRange(version: string | undefined, range: string): boolean {
  const v = version === undefined ? undefined : /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!v) return false;
  const have = [Number(v[1]), Number(v[2]), Number(v[3])];
  return range.split(/\s+/).filter((p) => p !== '').every((part) => {
    const m = COMPARISON.exec(part)!;
    const want = [Number(m[2]), Number(m[3]), Number(m[4])];
    const c = have[0]! - want[0]! || have[1]! - want[1]! || have[2]! - want[2]!;
    switch (m[1] ?? '=') {
      case '>=': return c >= 0;
      case '<=': return c <= 0;
      case '>': return c > 0;
      case '<': return c < 0;
      default: return c === 0;
    }
  });
}

/** "type=gateway arch=arm64,x64": for the console. */
export function describeCompatibility(c: Compatibility | undefined): string {
  if (!c) return 'every device';
  return COMPATIBILITY_KEYS.filter((k) => c[k] !== undefined).map((k) => `${k}=${Array.isArray(c[k]) ? (c[k] as string[]).join(',') : String(c[k])}`).join(' ');
}
