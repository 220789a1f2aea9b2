/**
 * `nxt-server ctl [--json] <command…>`: one console command in the running server, for scripts.
 * Output on stdout, errors and warnings on stderr, exit status 0 done, 1 failed (a push that
 * failed on any device included), 2 bad usage. With --json, one JSON document on stdout instead:
 *   {"ok": true, "status": 0, "command": [...], "output": [lines], "errors": [lines], "data": [...]}
 * (data: what the command reports for scripts, e.g. a push's outcome per device; or the
 * command's own --json output, parsed).
 */
import { chownSync, copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CONTROL_SOCKET, CTL_SPOOL_PREFIX, envelope, sendControl } from '../server/control-client.js';
import { exitWithError } from './exit-codes.js';

/** Which positional word of a command names a local file (push FILE, rollout start FILE,
 *  job put|config|install T FILE …). */
const FILE_ARGUMENT: Record<string, (positional: string[]) => number | undefined> = {
  push: () => 0,
  rollout: (p) => (p[0] === 'start' ? 1 : undefined),
  job: (p) => (['put', 'config', 'install'].includes(p[0] ?? '') ? 2 : undefined),
};
/** Options that take no value (every other --option takes the next word). */
const FLAGS = new Set(['--mkdir', '--apply', '--json']);

export async function runCtl(stateDir: string, words: string[], json = false): Promise<void> {
  const output: string[] = [];
  const errors: string[] = [];
  const data: unknown[] = [];
  // Interrupted (Ctrl-C, a script's timeout): Node's own end for these signals skips 'exit'
  // handlers, and left the copy (a module's size) in the server's state dir. Taken before the
  // copy is made, so that a signal during it waits for its handler. The command itself goes on
  // in the server, as it did.
  const command = words[0];
  if (command !== undefined && FILE_ARGUMENT[command]) {
    for (const [signal, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]] as const) process.once(signal, () => process.exit(128 + n));
  }
  const spool = spoolFiles(stateDir, words);
  process.once('exit', () => { if (spool) rmSync(spool.dir, { recursive: true, force: true }); });
  const request = { words: spool?.words ?? words, cwd: process.cwd() };
  // The server names the copy where it names the file (an error, a hint): the caller is shown
  // the file as they gave it.
  const shown = (line: string): string => (spool ? line.split(spool.copy).join(spool.given) : line);
  try {
    const status = await sendControl(stateDir, request, json
      ? { out: (l) => output.push(shown(l)), err: (l) => errors.push(shown(l)), data: (v) => data.push(v) }
      : { out: (l) => process.stdout.write(`${shown(l)}\n`), err: (l) => process.stderr.write(`${shown(l)}\n`), data: () => undefined });
    process.exitCode = status;
    if (json) process.stdout.write(`${JSON.stringify(envelope(words, status, output, errors, data))}\n`);
  } catch (err) {
    if (json) {
      process.stdout.write(`${JSON.stringify(envelope(words, 1, output, [...errors, err instanceof Error ? err.message : String(err)], data))}\n`);
      process.exitCode = 1;
      return;
    }
    exitWithError('nxt-server ctl', err);
  }
}

/**
 * The file a command names (push FILE, rollout start FILE, job put T FILE NAME), copied into the
 * server's state dir when ctl can write there (as root, or as the server's user): the server runs
 * as its own user, often unable to read the caller's home. The server keeps its own copy of what
 * it uses; ctl deletes this one when it exits. Without such a file, or without the right to copy
 * it, the words go as they are (the server resolves them from the caller's directory).
 */
function spoolFiles(stateDir: string, words: string[]): { words: string[]; dir: string; copy: string; given: string } | undefined {
  const [command, ...rest] = words;
  const which = command === undefined ? undefined : FILE_ARGUMENT[command];
  // No server here: nothing to copy (the connection says so, without a module's copy first).
  if (!which || !existsSync(join(stateDir, CONTROL_SOCKET))) return undefined;
  // Positional words: everything but --option value pairs.
  const positions: number[] = [];
  for (let i = 0; i < rest.length; i++) {
    if (!rest[i]!.startsWith('--')) positions.push(i);
    else if (!FLAGS.has(rest[i]!)) i++;
  }
  const index = which(positions.map((p) => rest[p]!));
  const at = index === undefined ? undefined : positions[index];
  if (at === undefined) return undefined;
  const file = resolve(rest[at]!);
  let dir: string | undefined;
  try {
    if (!statSync(file).isFile()) return undefined;
    dir = mkdtempSync(join(stateDir, CTL_SPOOL_PREFIX));
    const copy = join(dir, basename(file));
    copyFileSync(file, copy);
    // A module signed offline brings its signature.
    if (existsSync(`${file}.nxt-signed`)) copyFileSync(`${file}.nxt-signed`, `${copy}.nxt-signed`);
    // Copied by root: given to the server's user, whose state dir this is.
    const owner = statSync(stateDir);
    for (const p of [dir, copy, `${copy}.nxt-signed`]) {
      try { chownSync(p, owner.uid, owner.gid); } catch { /* not root, or no signature: already ours */ }
    }
    const out = [...words];
    out[at + 1] = copy;
    return { words: out, dir, copy, given: rest[at]! };
  } catch {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
}
