/**
 * The only places a maintenance job may touch on a device: a few named roots (logs, config,
 * drop-box) from its configuration. A name from the server is a relative path inside one root:
 * no absolute paths, no "..", no NUL, and no symbolic link may lead out of the root. A name that
 * breaks these rules is an invalid job, refused before anything is read or written.
 */
import { existsSync, lstatSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { NxtError } from '../errors.js';

export type RootName = 'logs' | 'config' | 'dropbox';
export type Roots = Readonly<Record<RootName, string>>;

export class InvalidJob extends NxtError {
  constructor(message: string) { super('invalid-job', message); }
}

/** Check `name` and join it to `root`; throws InvalidJob. Nothing on disk is touched. */
export function nameUnder(root: string, name: string): string {
  if (name === '' || name.length > 255) throw new InvalidJob('a file name must have 1 to 255 characters');
  if (name.includes('\0') || name.includes('\\')) throw new InvalidJob(`"${name}" has a forbidden character`);
  if (isAbsolute(name) || /^[a-zA-Z]:/.test(name)) throw new InvalidJob(`"${name}" is an absolute path: names are relative to the device's roots`);
  if (name.split('/').some((part) => part === '..' || part === '.')) throw new InvalidJob(`"${name}" leaves its root ("." and ".." are not allowed)`);
  return join(root, name);
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

/** Where a new file may be written under `root`: its directory exists inside the root and the
 *  name is not a link. */
export function newFileUnder(root: string, name: string): string {
  const path = nameUnder(root, name);
  const dir = dirname(path);
  if (!existsSync(dir)) throw new NxtError('no-such-file', `the directory of ${name} does not exist`);
  if (!inside(root, realpathSync(dir))) throw new InvalidJob(`"${name}" leads out of its root through a link`);
  if (existsSync(path) && lstatSync(path).isSymbolicLink()) throw new InvalidJob(`"${name}" is a link`);
  return path;
}
