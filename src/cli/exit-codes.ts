import { NxtError, errorMessage } from '../errors.js';
import { describeFsError } from '../util/atomic-file.js';

const FS_CAUSES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO']);

/** Error codes → process exit codes, in one place. */
const EXIT_CODES: Record<string, number> = {
  usage: 2,
  'no-trust': 3,
  'bad-key': 3,
  'bad-passphrase': 3,
  'needs-passphrase': 3,
  'bad-version': 2,
  'bad-config': 2,
  EADDRINUSE: 4,
  'dir-in-use': 4,
  EACCES: 4,
  EROFS: 4,
  ENOSPC: 4,
};

export function exitWithError(program: string, err: unknown): never {
  const code = err instanceof NxtError ? err.code : (err as { code?: string })?.code;
  // A raw filesystem error (EROFS: read-only file system, open …) gets its cause in words first.
  const plain = !(err instanceof NxtError) && code !== undefined && FS_CAUSES.has(code) ? `${describeFsError(err)}: ` : '';
  process.stderr.write(`${program}: ${plain}${errorMessage(err)}\n`);
  process.exit((code && EXIT_CODES[code]) || 1);
}

export function parsePort(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 0 || n > 65535) throw new NxtError('usage', `"${text}" is not a UDP port (0-65535)`);
  return n;
}

/** Seconds, with a fraction if wanted ("30", "2.5"); more than zero. */
export function parseSeconds(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(String(text)) || !(n > 0)) throw new NxtError('usage', `${flag} "${text}" is not a positive number of seconds`);
  return n;
}

export function parsePositiveMs(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1) throw new NxtError('usage', `"${text}" is not a positive number of milliseconds`);
  return n;
}
