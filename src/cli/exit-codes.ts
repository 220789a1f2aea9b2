import { isIP } from 'node:net';
import { NxtError, errorMessage } from '../errors.js';
import { describeFsError } from '../util/atomic-file.js';

const FS_CAUSES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO']);

/**
 * Exit status, the same for every nxt program (and in their --help and the README):
 *   0  it did what was asked
 *   1  it failed (a push failed on a device, no server running, a key, a file, the disk…)
 *   2  it was asked wrongly (an unknown flag or command, a bad value, a bad config file)
 */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** Error codes that mean "asked wrongly"; everything else is a failure. */
const USAGE_CODES = new Set(['usage', 'bad-version', 'bad-config']);

/** The help text's closing paragraph on exit status (both programs). */
export const EXIT_STATUS_HELP = '\nExit status: 0 done; 1 failed (for ctl: the command failed, or a push failed on any device); 2 bad usage (flags, arguments, config file).';

export function exitWithError(program: string, err: unknown): never {
  const code = err instanceof NxtError ? err.code : (err as { code?: string })?.code;
  // A raw filesystem error (EROFS: read-only file system, open …) gets its cause in words first.
  const plain = !(err instanceof NxtError) && code !== undefined && FS_CAUSES.has(code) ? `${describeFsError(err)}: ` : '';
  process.stderr.write(`${program}: ${plain}${errorMessage(err)}\n`);
  process.exit(code !== undefined && USAGE_CODES.has(code) ? EXIT_USAGE : EXIT_FAILED);
}

export function parsePort(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 0 || n > 65535) throw new NxtError('usage', `"${text}" is not a UDP port (0-65535)`);
  return n;
}

/**
 * `HOST:PORT`, `[IPv6]:PORT`, or `:PORT` (no host: the caller decides what that means), for
 * `flag`. The host is not looked up here.
 */
export function parseHostPort(flag: string, text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]*):(\d+)$/.exec(text);
  if (!m || (text.startsWith('[') && isIP(m[1]!) !== 6)) throw new NxtError('usage', `${flag} "${text}" must be HOST:PORT ([IPv6]:PORT for an IPv6 address)`);
  return { host: m[1]!, port: parsePort(m[2]!) };
}

/** Seconds, with a fraction if wanted ("30", "2.5"); more than zero. */
export function parseSeconds(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(String(text)) || !(n > 0)) throw new NxtError('usage', `${flag} "${text}" is not a positive number of seconds`);
  return n;
}

/** The longest a Node timer waits: 2^31 − 1 ms, about 24.9 days. Node does not refuse a longer
 *  delay but fires it after 1 ms (with only a warning): a probation of 30 days would commit at
 *  once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `ms`, checked to be a delay a timer can wait (`flag` names it in the error). */
export function timerMs(flag: string, ms: number, max = MAX_TIMER_MS): number {
  if (ms > max) throw new NxtError('usage', `${flag} is ${ms} ms: at most ${max} ms (${(max / 86_400_000).toFixed(1)} days)`);
  return ms;
}

export function parsePositiveMs(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1) throw new NxtError('usage', `"${text}" is not a positive number of milliseconds`);
  return n;
}
