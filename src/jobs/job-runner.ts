/**
 * What a device does for one maintenance job, inside its roots (roots.ts). A job either ends here
 * (clean, or any refusal) or leaves a file to upload (logs, backup) or to receive (put); the agent
 * moves those files with the same transfer as modules.
 */
import { createWriteStream, existsSync, lstatSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';
import { JobCode, JobKind, type JobCodeValue } from '../protocol/messages.js';
import { matches, severityRank, type LogFilter } from './log-filter.js';
import { logLines, MAX_LINE_BYTES } from './log-lines.js';
import { existingUnder, InvalidJob, newFileUnder, splitRootDir, type Roots } from './roots.js';
import { boundedRegExp } from '../util/bounded-regexp.js';

export type JobPlan =
  | { readonly then: 'report'; readonly code: JobCodeValue; readonly message: string }
  | { readonly then: 'upload'; readonly path: string; readonly name: string; readonly message: string; readonly temporary: boolean }
  | { readonly then: 'receive'; readonly path: string; readonly size: number; readonly sha256: string; readonly config?: ConfigPlan; readonly install?: InstallPlan }
  | { readonly then: 'restore'; readonly path: string; readonly name: string; readonly apply: boolean }
  | { readonly then: 'report-status' };

/** A config file being received: kept as `<name>.previous` what it replaces, applied if asked. */
export interface ConfigPlan {
  readonly name: string;
  readonly apply: boolean;
}

/** A file for an installer: which one, and its command (from the device's own config). */
export interface InstallPlan {
  readonly with: string;
  readonly command: string;
}

/** What a device allows install jobs to run: names to commands with a {file} placeholder,
 *  e.g. {"deb": "apt-get install -y {file}"}. Only these run, only with the file's path. */
export type Installers = Readonly<Record<string, string>>;

/** Where a config file's previous version is kept. */
export const PREVIOUS_SUFFIX = '.previous';

/** Run (or prepare) a job; never throws: every failure is a report with its code. */
export async function runJob(kind: number, paramsJson: string, roots: Roots, workDir: string, jobId: number, now: number, installers: Installers = {}): Promise<JobPlan> {
  try {
    const params = parseParams(paramsJson);
    switch (kind) {
      case JobKind.logs: return await logs(params, roots, join(workDir, `job-${jobId}.log`), jobId);
      case JobKind.backup: {
        const path = existingUnder(roots.config, text(params, 'name', true)!);
        if (!statSync(path).isFile()) throw new NxtError('no-such-file', `${text(params, 'name')} is not a file`);
        return { then: 'upload', path, name: basename(path), message: `${basename(path)}, ${statSync(path).size} bytes`, temporary: false };
      }
      case JobKind.clean: return clean(params, roots, now);
      case JobKind.put: {
        const size = params.size;
        const sha256 = params.sha256;
        if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
          throw new InvalidJob('put needs a size and a sha256');
        }
        return { then: 'receive', path: newFileUnder(roots.dropbox, text(params, 'name', true)!, params.mkdir === true), size, sha256 };
      }
      case JobKind.config: {
        const size = params.size;
        const sha256 = params.sha256;
        if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
          throw new InvalidJob('config needs a size and a sha256');
        }
        const name = text(params, 'name', true)!;
        if (name.endsWith(PREVIOUS_SUFFIX)) throw new InvalidJob(`"${name}": names ending ${PREVIOUS_SUFFIX} hold the kept versions`);
        return { then: 'receive', path: newFileUnder(roots.config, name), size, sha256, config: { name, apply: params.apply === true } };
      }
      case JobKind.configRestore: {
        const name = text(params, 'name', true)!;
        const path = newFileUnder(roots.config, name);
        existingUnder(roots.config, `${name}${PREVIOUS_SUFFIX}`); // there must be one, inside the root
        return { then: 'restore', path, name, apply: params.apply === true };
      }
      case JobKind.install: {
        const size = params.size;
        const sha256 = params.sha256;
        if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
          throw new InvalidJob('install needs a size and a sha256');
        }
        const names = Object.keys(installers);
        if (names.length === 0) throw new InvalidJob('this device has no installers configured ("installers" in its config): it runs no install job');
        const which = text(params, 'with', true)!;
        if (!Object.hasOwn(installers, which)) throw new InvalidJob(`no installer "${which}" on this device (it has: ${names.join(', ')})`);
        // The file goes to the private data dir under a plain name of our own making.
        const ext = /\.[A-Za-z0-9]{1,8}$/.exec(text(params, 'name') ?? '')?.[0] ?? '';
        const dir = join(workDir, 'install');
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        return { then: 'receive', path: join(dir, `job-${jobId}${ext}`), size, sha256, install: { with: which, command: installers[which]! } };
      }
      case JobKind.report:
        return { then: 'report-status' };
      default:
        throw new InvalidJob(`unknown job kind ${kind}`);
    }
  } catch (err) {
    const code = err instanceof InvalidJob ? JobCode.invalidJob
      : err instanceof NxtError && err.code === 'no-such-file' ? JobCode.noSuchFile : JobCode.generationFailed;
    return { then: 'report', code, message: errorMessage(err) };
  }
}

type Params = Record<string, unknown>;

function parseParams(json: string): Params {
  try {
    const p: unknown = JSON.parse(json);
    if (typeof p === 'object' && p !== null && !Array.isArray(p)) return p as Params;
  } catch { /* below */ }
  throw new InvalidJob('job parameters are not a JSON object');
}

function text(p: Params, key: string, required = false): string | undefined {
  const v = p[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string') throw new InvalidJob(`"${key}" must be text`);
  return v;
}

function time(p: Params, key: string): number | undefined {
  const v = text(p, key);
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidJob(`"${key}" is not a time: ${v}`);
  return t;
}

async function logs(p: Params, roots: Roots, out: string, jobId: number): Promise<JobPlan> {
  const severity = text(p, 'severity');
  if (severity !== undefined && severityRank(severity) < 0) throw new InvalidJob(`unknown severity "${severity}"`);
  let grep: RegExp | undefined;
  const pattern = text(p, 'grep');
  try {
    grep = pattern === undefined ? undefined : boundedRegExp(pattern);
  } catch (err) {
    throw new InvalidJob(`"${pattern}" is not a regular expression this device runs: ${errorMessage(err)}`);
  }
  const filter: LogFilter = { since: time(p, 'since'), until: time(p, 'until'), severity, grep };
  const file = text(p, 'file');
  const files = file !== undefined ? [existingUnder(roots.logs, file)]
    : readdirSync(existingUnder(roots.logs, '')).sort().map((n) => join(roots.logs, n)).filter((f) => lstatSync(f).isFile());
  const sink = createWriteStream(out, { mode: 0o600 });
  let kept = 0;
  let read = 0;
  let cut = 0;
  try {
    for (const f of files) {
      if (!statSync(f).isFile()) throw new NxtError('no-such-file', `${basename(f)} is not a file`);
      for await (const line of logLines(f)) {
        read++;
        if (line.cut) cut++;
        if (matches(line.text, filter)) { kept++; if (!sink.write(`${line.text}\n`)) await new Promise<void>((r) => sink.once('drain', () => r())); }
      }
    }
  } finally {
    await new Promise<void>((resolve, reject) => sink.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  const cutNote = cut === 0 ? '' : `; ${cut} line(s) longer than ${MAX_LINE_BYTES / 1024} KiB cut there`;
  return { then: 'upload', path: out, name: `logs-job-${jobId}.txt`, message: `${kept} of ${read} lines from ${files.length} file(s)${cutNote}`, temporary: true };
}

function clean(p: Params, roots: Roots, now: number): JobPlan {
  const dir = text(p, 'dir', true)!;
  const { root: rootName, rest } = splitRootDir(dir);
  const olderThan = p.olderThanMs === undefined ? 0 : p.olderThanMs;
  if (typeof olderThan !== 'number' || olderThan < 0) throw new InvalidJob('"olderThanMs" must be a number');
  // Nothing there is nothing to clean: the wanted state already holds.
  if (!existsSync(join(roots[rootName], rest))) return { then: 'report', code: JobCode.ok, message: `nothing to clean: ${dir} does not exist` };
  const path = existingUnder(roots[rootName], rest);
  if (!statSync(path).isDirectory()) throw new NxtError('no-such-file', `${dir} is not a directory`);
  let removed = 0;
  let files = 0;
  for (const name of readdirSync(path)) {
    const f = join(path, name);
    const st = lstatSync(f); // a link is not followed, and not removed: only plain files
    if (!st.isFile()) continue;
    files++;
    if (now - st.mtimeMs >= olderThan) { unlinkSync(f); removed++; }
  }
  return { then: 'report', code: JobCode.ok, message: `removed ${removed} of ${files} files from ${dir}` };
}
