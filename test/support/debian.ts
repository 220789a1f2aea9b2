/** Commands tests and benchmarks need, installed from Debian's packages when missing (as root). */
import { spawnSync } from 'node:child_process';

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Install `packages` if any of `commands` is missing; true when all of them are there then. */
export function ensureCommands(commands: readonly string[], packages: readonly string[], why: string): boolean {
  const missing = commands.filter((c) => !have(c));
  if (missing.length > 0 && process.getuid?.() === 0) {
    console.error(`installing ${packages.join(', ')} with apt-get for ${why}…`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    if (spawnSync('apt-get', ['install', '-y', '-qq', ...packages], { stdio: 'ignore', env }).status !== 0) {
      spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
      spawnSync('apt-get', ['install', '-y', '-qq', ...packages], { stdio: 'ignore', env });
    }
  }
  return commands.every(have);
}
