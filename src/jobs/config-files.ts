/**
 * Config files in the device's config root, replaced so that the old one is never lost: the
 * file being replaced is kept as `<name>.previous`, every step is a rename (atomic: a crash
 * leaves either the old or the new file under the name, never half of one), and what was put in
 * place can be taken back (a plugin refused it) or swapped with the kept version (config-restore).
 */
import { existsSync, linkSync, lstatSync, renameSync, unlinkSync } from 'node:fs';
import { NxtError } from '../errors.js';
import { PREVIOUS_SUFFIX } from './job-runner.js';

/** What `install` did, to undo it (or commit it). */
export interface Installed {
  readonly path: string;
  /** There was a file under the name before (now `<path>.previous`). */
  readonly hadPrevious: boolean;
  /** The kept version that one replaced, held aside until the install is committed. */
  readonly aside?: string;
}

/** Hard-link `from` to `to` through a temporary name, replacing `to` atomically. */
function keepAs(from: string, to: string): void {
  const tmp = `${to}.nxt-tmp`;
  try { unlinkSync(tmp); } catch { /* none */ }
  linkSync(from, tmp);
  renameSync(tmp, to);
}

function refuseLink(path: string): void {
  if (existsSync(path) && lstatSync(path).isSymbolicLink()) throw new NxtError('invalid-job', `${path} is a link: not replacing it`);
}

/** Put `incoming` (a complete file beside it) under `path`, keeping what was there. */
export function install(path: string, incoming: string): Installed {
  const previous = `${path}${PREVIOUS_SUFFIX}`;
  refuseLink(path);
  refuseLink(previous);
  const hadPrevious = existsSync(path);
  let aside: string | undefined;
  if (hadPrevious) {
    // An undo must give back the kept version too, not only the file.
    if (existsSync(previous)) keepAs(previous, aside = `${previous}.nxt-aside`);
    keepAs(path, previous);
  }
  renameSync(incoming, path);
  return { path, hadPrevious, aside };
}

/** Undo `install`: the file and its kept version as they were before it. */
export function undo(done: Installed): void {
  const previous = `${done.path}${PREVIOUS_SUFFIX}`;
  if (!done.hadPrevious) { unlinkSync(done.path); return; }
  keepAs(previous, done.path);
  if (done.aside) renameSync(done.aside, previous);
  else unlinkSync(previous);
}

/** Keep `install`: forget what was held aside for an undo. */
export function commit(done: Installed): void {
  if (done.aside) try { unlinkSync(done.aside); } catch { /* gone */ }
}

/** Swap the file and its kept version (config-restore); swapping again undoes it. */
export function restore(path: string): void {
  const previous = `${path}${PREVIOUS_SUFFIX}`;
  refuseLink(path);
  refuseLink(previous);
  if (!existsSync(previous)) throw new NxtError('no-such-file', `${previous} does not exist: nothing to restore`);
  if (!existsSync(path)) {
    renameSync(previous, path);
    return;
  }
  const current = `${path}.nxt-current`;
  try { unlinkSync(current); } catch { /* none */ }
  linkSync(path, current);
  renameSync(previous, path);
  renameSync(current, previous);
}
