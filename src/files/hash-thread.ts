/**
 * SHA-256 of a large file as it arrives, computed in a thread of its own. A device's main thread
 * receives, opens and writes every chunk of a module; hashing them there too was its largest
 * single cost (~125 ms of a 128 MiB push on the benchmark VM, the main thread then the data
 * phase's bottleneck). Here the writer says how far the file is written (a contiguous prefix),
 * and the thread reads that much back from disk (the page cache) and hashes it, beside the
 * receiving: what is hashed is what is in the file, which is what the device later loads.
 *
 * One thread, started with the first file it follows and ended once it has followed none for a
 * while (an idle device keeps no thread for it). If it dies, the digests it owed are refused
 * (`HashThreadGone`): the writer hashes the file itself then.
 */
import type { Worker } from 'node:worker_threads';
import { NxtError } from '../errors.js';
import { startHelperThread } from '../util/helper-thread.js';

const WORKER_URL = new URL('./hash-thread-worker.js', import.meta.url);
/** The thread ends once it has followed no file for this long. */
const IDLE_MS = 10_000;

export type HashRequest =
  | { readonly type: 'open'; readonly id: number; readonly path: string; readonly identity: string }
  | { readonly type: 'written'; readonly id: number; readonly upTo: number }
  | { readonly type: 'digest'; readonly id: number; readonly size: number }
  | { readonly type: 'drop'; readonly id: number };

export type HashReply = { readonly id: number; readonly digest: string } | { readonly id: number; readonly error: string };

/** A file the thread follows. */
export interface FollowedFile {
  /** The file's first `bytes` are written (only ever more). */
  written(bytes: number): void;
  /** The digest of the file's first `size` bytes, all of them said written: rejects with the
   *  reason it cannot be had (a read that failed, the thread gone: HashThreadGone). */
  digest(size: number): Promise<string>;
  /** Not wanted any more (the transfer stopped): the thread closes its copy of the file. */
  drop(): void;
}

/** The thread has no digest to give (it stopped, or no longer follows the file): hash the file
 *  some other way. */
export class HashThreadGone extends NxtError {
  constructor(message: string) {
    super('hash-thread', message);
  }
}

export class HashThread {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, { resolve: (digest: string) => void; reject: (err: Error) => void }>();
  private readonly following = new Set<number>();
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;

  /** `workerUrl`: the thread's script (tests name the compiled one). */
  constructor(private readonly workerUrl: URL = WORKER_URL, private readonly idleMs = IDLE_MS) {}

  /** Follow the file at `path`, which the caller has open for writing (`device:inode`: its
   *  identity, which the thread checks as it opens its own copy). */
  follow(path: string, identity: string): FollowedFile {
    const id = this.nextId++;
    clearTimeout(this.idleTimer);
    this.following.add(id);
    const worker = this.thread();
    const post = (m: HashRequest): void => { if (this.worker === worker) worker.postMessage(m); };
    post({ type: 'open', id, path, identity });
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      this.following.delete(id);
      this.idleSoon();
    };
    return {
      written: (bytes) => { if (!done) post({ type: 'written', id, upTo: bytes }); },
      digest: (size) => {
        if (done) return Promise.reject(new HashThreadGone('the hashing thread no longer follows this file (dropped, or its digest given)'));
        end();
        if (this.worker !== worker) return Promise.reject(new HashThreadGone('the hashing thread stopped before the file was whole'));
        return new Promise<string>((resolve, reject) => {
          this.waiting.set(id, { resolve, reject });
          post({ type: 'digest', id, size });
        });
      },
      drop: () => {
        if (done) return;
        end();
        post({ type: 'drop', id });
      },
    };
  }

  /** Files followed now (for tests and status). */
  get files(): number {
    return this.following.size;
  }

  /** Whether the thread runs. */
  get running(): boolean {
    return this.worker !== undefined;
  }

  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    const w = this.worker;
    if (!w) return;
    this.stopped(w, 'closed');
    await w.terminate();
  }

  private idleSoon(): void {
    if (this.following.size > 0 || this.waiting.size > 0) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => { if (this.following.size === 0 && this.waiting.size === 0) void this.close(); }, this.idleMs);
    this.idleTimer.unref();
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = startHelperThread<HashReply>(this.workerUrl, (r) => {
      const w = this.waiting.get(r.id);
      if (!w) return;
      this.waiting.delete(r.id);
      if ('digest' in r) w.resolve(r.digest);
      else w.reject(new NxtError('storage', r.error));
      this.idleSoon();
    }, (w, why) => this.stopped(w, why));
    this.worker = worker;
    return worker;
  }

  /** `worker` stopped: the digests it owed are refused; what it followed is followed no more. */
  private stopped(worker: Worker, why: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.following.clear();
    for (const [id, w] of [...this.waiting]) {
      this.waiting.delete(id);
      w.reject(new HashThreadGone(`the hashing thread stopped (${why})`));
    }
  }
}

let shared: HashThread | undefined;

/** The process's hashing thread (started with the first file it follows). */
export function sharedHashThread(): HashThread {
  shared ??= new HashThread();
  return shared;
}
