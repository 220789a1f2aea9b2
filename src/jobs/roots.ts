/**
 * The only places a maintenance job may touch on a device: a few named roots (logs, config,
 * drop-box) from its configuration. A name from the server is a relative path inside one root:
 * no absolute paths, no "..", no NUL, and no symbolic link may lead out of the root. A name that
 * breaks these rules is an invalid job, refused before anything is read or written.
 */
import { existsSync, lstatSync, mkdirSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { NxtError } from '../errors.js';

export type RootName = 'logs' | 'config' | 'dropbox';
export type Roots = Readonly<Record<RootName, string>>;

export class InvalidJob extends NxtError {
  constructor(message: string) { super('invalid-job', message); }
}

/** Check a name from the server (the server checks it too, when the job is queued); throws InvalidJob. */
export function checkName(name: string): void {
  if (name === '' || name.length > 255) throw new InvalidJob('a file name must have 1 to 255 characters');
  if (name.includes('\0') || name.includes('\\')) throw new InvalidJob(`"${name}" has a forbidden character`);
  if (isAbsolute(name) || /^[a-zA-Z]:/.test(name)) throw new InvalidJob(`"${name}" is an absolute path: names are relative to the device's roots`);
  if (name.split('/').some((part) => part === '..' || part === '.')) throw new InvalidJob(`"${name}" leaves its root ("." and ".." are not allowed)`);
}

/** Check `name` and join it to `root`; throws InvalidJob. Nothing on disk is touched. */
export function nameUnder(root: string, name: string): string {
  checkName(name);
  return join(root, name);
}

/** `logs`, `config/app` …: a root's name, then a directory in it. */
export function splitRootDir(dir: string): { root: RootName; rest: string } {
  const [root, ...rest] = dir.split('/');
  if (root !== 'logs' && root !== 'config' && root !== 'dropbox') throw new InvalidJob(`"${dir}" must start with a root: logs, config or dropbox`);
  const name = rest.filter((p) => p !== '').join('/');
  if (name !== '') checkName(name);
  return { root, rest: name };
}

/** Whether `path`, with every link resolved, is inside `root` (also resolved). */
function inside(root: string, path: string): boolean {
  const rel = relative(realpathSync(root), path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** An existing file or directory under `root` ('' is the root itself); a link that leads out is refused. */
export function existingUnder(root: string, name: string): string {
  const path = name === '' ? root : nameUnder(root, name);
  if (!existsSync(path)) throw new NxtError('no-such-file', `${name} does not exist`);
  if (!inside(root, realpathSync(path))) throw new InvalidJob(`"${name}" leads out of its root through a link`);
  return path;
}

/** Where a new file may be written under `root`: its directory exists inside the root (or, with
 *  `mkdir`, is made there) and the name is not a link. */
export function newFileUnder(root: string, name: string, mkdir = false): string {
  const path = nameUnder(root, name);
  const dir = dirname(path);
  if (!existsSync(dir) && mkdir) makeDirsUnder(root, relative(root, dir));
  if (!existsSync(dir)) throw new NxtError('no-such-file', `the directory of ${name} does not exist (job put … --mkdir makes it)`);
  if (!inside(root, realpathSync(dir))) throw new InvalidJob(`"${name}" leads out of its root through a link`);
  if (existsSync(path) && lstatSync(path).isSymbolicLink()) throw new InvalidJob(`"${name}" is a link`);
  return path;
}

/** Make `rel`'s folders one by one under `root`; an existing part must be a real folder (a link
 *  could lead out of the root, and mkdir would follow it). */
function makeDirsUnder(root: string, rel: string): void {
  let at = root;
  for (const part of rel.split('/').filter((p) => p !== '')) {
    at = join(at, part);
    if (!existsSync(at)) { mkdirSync(at, { mode: 0o700 }); continue; }
    const st = lstatSync(at);
    if (st.isSymbolicLink()) throw new InvalidJob(`"${relative(root, at)}" is a link: not making folders through it`);
    if (!st.isDirectory()) throw new InvalidJob(`"${relative(root, at)}" is not a folder`);
  }
}
