/** Plugin modules of a chosen size, made at test time (nothing large is committed). */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A valid plugin of about `bytes` bytes: random base64 in a comment, then the version function. */
export function writeModule(dir: string, name: string, bytes: number, major = 9, minor = 1): string {
  const path = join(dir, name);
  const tail = `\nexport default () => ({ major: ${major}, minor: ${minor}, productName: 'bulk' });\n`;
  const filler = randomBytes(Math.ceil((Math.max(0, bytes - tail.length - 4) * 3) / 4)).toString('base64').slice(0, Math.max(0, bytes - tail.length - 4));
  writeFileSync(path, `/*${filler}*/${tail}`);
  return path;
}
