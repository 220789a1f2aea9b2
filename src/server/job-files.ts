/**
 * The files kept for jobs that send one (put, config, install): `put/<sha256>` in the state dir,
 * copied there when the job was queued (or fetched from the database by the node that holds the
 * device). A copy goes once no job still to run (queued, or sent and not yet answered) names it
 * and nothing has touched it for the grace period: queuing a job touches its copy first, so a job
 * being queued right now never loses its file. With several nodes, its parts in the database go
 * too (Store.removeFileParts checks every node's jobs and the releases itself).
 *
 * What devices uploaded (`uploads/<device>/<job>/`: logs, backups, reports) goes after
 * `--keep-uploads` days (uploadsToDelete), the records of finished jobs after `--keep-jobs` days
 * (jobsToForget). Pure.
 */
import type { Job } from './job-store.js';

/** A status report (`job report`) is some KiB of JSON (its plugin's part at most 16 KiB). The
 *  console and the API parse the newest one whole on the server's main thread (`report`,
 *  `clients --where`): one a device made a GiB could stall the server, or exhaust its heap. */
export const MAX_REPORT_BYTES = 1024 * 1024;

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

/** `--keep-uploads` counts in days. */
export const DAY_MS = 86_400_000;

/** A folder of what a device uploaded for a job: uploads/<device>/<job>/. */
export interface UploadDir {
  readonly device: string;
  readonly job: number;
  readonly mtimeMs: number;
}

/**
 * The upload folders that may be deleted at `now` (wall-clock ms): logs, backups and reports of
 * jobs that are over (done or failed, or no longer known) whose folder has not changed for
 * `keepMs` (an upload is written once, when it arrives). Kept whatever their age: a job still
 * running (its upload may be arriving) and each device's newest status report (`report` shows
 * the newest it has).
 */
export function uploadsToDelete(dirs: readonly UploadDir[], jobs: readonly Job[], now: number, keepMs: number): UploadDir[] {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const newestReport = newestReports(jobs);
  return dirs.filter((d) => {
    const job = byId.get(d.job);
    if (job && (job.state === 'queued' || job.state === 'sent')) return false;
    if (job && newestReport.get(job.device) === job.id) return false;
    return now - d.mtimeMs >= keepMs;
  });
}

/**
 * The ids of the jobs whose records may go at `now` (wall-clock ms): over (done or failed) and
 * unchanged for `keepMs`. Each device's newest status report stays whatever its age (`report`
 * shows it, and its upload is kept for it). A fleet polling for jobs every day would otherwise
 * keep every record for ever, in the database and in the server's memory.
 */
export function jobsToForget(jobs: readonly Job[], now: number, keepMs: number): number[] {
  const newestReport = newestReports(jobs);
  return jobs.filter((j) => (j.state === 'done' || j.state === 'failed') && newestReport.get(j.device) !== j.id
    && now - Date.parse(j.updatedAt) >= keepMs).map((j) => j.id);
}

/** Each device's newest status report that arrived (its job id): kept by both sweeps. */
function newestReports(jobs: readonly Job[]): Map<string, number> {
  const newest = new Map<string, number>();
  for (const j of jobs) {
    if (j.kind === 'report' && j.file !== undefined && j.id > (newest.get(j.device) ?? -1)) newest.set(j.device, j.id);
  }
  return newest;
}
