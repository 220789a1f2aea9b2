/**
 * Sealing a release in a thread of its own. Sealing is a large share of a push's CPU on the
 * server (reading, encrypting and writing every chunk: ~0.1 s for 128 MiB; ~0.3 s when it also
 * hashed the module again), and on the main thread it took turns with sending the chunks it had
 * just sealed: a 128 MiB push on loopback
 * spent twice as long in its data phase as one whose release was sealed already. In a thread,
 * sealing runs beside sending, and the main thread stays free for every other device.
 *
 * One long-lived thread seals every release (a few at a time, each block by block). The server
 * starts it with itself (`start`): a thread takes ~30-40 ms to start, which the first push, of
 * whatever size, would otherwise wait for. If it dies, the seals it held fail with a clear error
 * and the next seal starts a new one.
 */
import type { Worker } from 'node:worker_threads';
import { NxtError } from '../errors.js';
import { startHelperThread } from '../util/helper-thread.js';
import type { SealJob, Sealer, SealProgress } from './sealed-release.js';

const WORKER_URL = new URL('./seal-thread-worker.js', import.meta.url);

/** The thread's report on one job: chunks sealed so far, or the failure. */
export interface SealReport {
  readonly id: number;
  readonly sealed: number;
  readonly failure?: { readonly code: string; readonly message: string };
  /** With the last block: the identity of the file it sealed (util/file-identity.ts). */
  readonly identity?: string;
}

/** What the thread is asked: to seal a job, to stop one (it fails as stopped at its next block),
 *  or to ready itself. */
export type SealRequest = { readonly id: number; readonly job: SealJob } | { readonly stop: number } | { readonly warm: true };

export class SealThread {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { readonly total: number; readonly outPath: string; sealed: number; readonly progress: SealProgress }>();
  private nextId = 1;

  /** `workerUrl`: the thread's script (tests name the compiled one). */
  constructor(private readonly workerUrl: URL = WORKER_URL) {}

  readonly seal: Sealer = (job: SealJob, progress) => {
    const id = this.nextId++;
    this.pending.set(id, { total: Math.ceil(job.size / job.chunkSize), outPath: job.outPath, sealed: 0, progress });
    const worker = this.thread();
    worker.postMessage({ id, job } satisfies SealRequest);
    return () => { if (this.pending.has(id) && this.worker === worker) worker.postMessage({ stop: id } satisfies SealRequest); };
  };

  /** Start the thread now rather than at the first seal, and ready it (its buffers mapped, its
   *  cipher and its messages used once; the server's main thread readies tweetnacl and the hash's
   *  buffers: warmUpSigner, warmHashBuffers). From the hash's start to the first sealed block of
   *  a 16 MiB push, the first after a start took 92–108 ms, later ones 33–45; readied, 57–79. */
  start(): void {
    this.thread().postMessage({ warm: true } satisfies SealRequest);
  }

  /** Stop the thread: seals still running fail. */
  async close(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.stopped(w, 'the server is stopping');
    await w.terminate();
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    // It must not keep the process alive: a server that exits stops sealing.
    const worker = startHelperThread<SealReport>(this.workerUrl, (r) => {
      const job = this.pending.get(r.id);
      if (!job) return;
      job.sealed = r.sealed;
      if (r.failure || r.sealed >= job.total) this.pending.delete(r.id);
      job.progress(r.sealed, r.failure ? new NxtError(r.failure.code, r.failure.message) : undefined, r.identity);
    }, (w, why) => this.stopped(w, why));
    this.worker = worker;
    return worker;
  }

  /** `worker` stopped (or is being stopped): every seal it held fails; the next seal starts another. */
  private stopped(worker: Worker, why: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const failure = new NxtError('seal-failed', `the sealing thread stopped (${why}): push again`);
    for (const [id, job] of [...this.pending]) {
      this.pending.delete(id);
      // Its half-written file goes with the failure (sealRelease deletes it).
      job.progress(job.sealed, failure);
    }
  }
}
