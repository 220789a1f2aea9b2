/**
 * The files kept for jobs that send one (put, config, install): `put/<sha256>` in the state dir,
 * copied there when the job was queued (or fetched from the database by the node that holds the
 * device). A copy goes once no job still to run (queued, or sent and not yet answered) names it
 * and nothing has touched it for the grace period: queuing a job touches its copy first, so a job
 * being queued right now never loses its file. With several nodes, its parts in the database go
 * too (Store.removeFileParts checks every node's jobs and the releases itself). Pure.
 */
import type { Job } from './job-store.js';

/** How long an unneeded copy is kept after it was last touched. */
export const JOB_FILE_GRACE_MS = 10 * 60_000;
/** How often the copies are looked over. */
export const JOB_FILE_SWEEP_MS = 10 * 60_000;

export interface KeptFile {
  /** Its name in put/: the content's sha256. */
  readonly name: string;
  readonly mtimeMs: number;
}

/** The names of the kept files that may be deleted at `now` (wall-clock milliseconds). */
export function jobFilesToDelete(files: readonly KeptFile[], jobs: readonly Job[], now: number, graceMs = JOB_FILE_GRACE_MS): string[] {
  const needed = new Set<string>();
  for (const j of jobs) {
    if ((j.state === 'queued' || j.state === 'sent') && typeof j.params.sha256 === 'string') needed.add(j.params.sha256);
  }
  return files.filter((f) => /^[0-9a-f]{64}$/.test(f.name) && !needed.has(f.name) && now - f.mtimeMs >= graceMs).map((f) => f.name);
}
