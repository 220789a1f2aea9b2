/**
 * A real PostgreSQL server for a test file: its own cluster in a temporary folder (initdb), on a
 * free loopback port, stopped when the file ends. Debian's postgresql package provides the
 * binaries (.ci/run installs it); as root, the server runs as the package's `postgres` user,
 * since PostgreSQL refuses to run as root.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync, realpathSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { tempDir } from './processes.js';

/** The folder with initdb and pg_ctl, or undefined when PostgreSQL is not installed. */
export function postgresBin(): string | undefined {
  // Debian keeps the server's programs off the PATH, under the major version.
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  const found = versions.map((v) => join(root, v, 'bin')).find((d) => existsSync(join(d, 'initdb')));
  if (found) return found;
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  return which ? dirname(realpathSync(which)) : undefined;
}

/** In CI PostgreSQL must be there (.ci/run installs it): a missing one fails the tests there. */
export const havePostgres = postgresBin() !== undefined;
if (!havePostgres && process.env.CI) throw new Error('PostgreSQL is not installed (apt-get install postgresql): .ci/run should have installed it');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Postgres {
  /** A URL for a new, empty database on the server. */
  newDatabase(name: string): string;
  readonly port: number;
  /** Stop the server at once (its folder goes with the test's temporary folders). */
  stop(): void;
}

/** Start a server now (a test file stops it in its afterAll; a benchmark as it ends). */
export async function startPostgres(): Promise<Postgres> {
  const bin = postgresBin();
  if (!bin) throw new Error('PostgreSQL is not installed (apt-get install postgresql)');
  const dir = tempDir('nxt-pg-');
  const asRoot = process.getuid?.() === 0;
  const run = (cmd: string, args: string[]): void => {
    const full = join(bin, cmd);
    if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', full, ...args], { stdio: 'pipe', cwd: '/' });
    else execFileSync(full, args, { stdio: 'pipe' });
  };
  if (asRoot) {
    const pgUser = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
    const pgGroup = execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
    chownSync(dir, Number(pgUser), Number(pgGroup));
  }
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-U', 'nxt', '-A', 'trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  // fsync off: these tests are about nxt's queries and nodes, not PostgreSQL's durability.
  run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -F -c max_connections=200`, 'start']);
  const admin = `postgres://nxt@127.0.0.1:${port}/postgres`;
  return {
    port,
    stop(): void {
      try { run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']); } catch { /* already gone */ }
    },
    newDatabase(name: string): string {
      execFileSync(join(bin, 'psql'), [admin, '-q', '-c', `CREATE DATABASE ${name}`], { stdio: 'pipe' });
      return `postgres://nxt@127.0.0.1:${port}/${name}`;
    },
  };
}
