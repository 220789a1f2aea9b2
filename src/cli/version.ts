/** The version both programs print with --version: package.json's, found beside dist/ (in a
 *  checkout and in every installed tree), with the Node.js that runs it. */
import { readFileSync } from 'node:fs';

export function nxtVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function versionLine(program: string): string {
  return `${program} ${nxtVersion()} (Node.js ${process.versions.node})`;
}
