/** The sealing thread (seal-thread.ts): seals each job it is given, reporting every block. */
import { parentPort } from 'node:worker_threads';
import type { SealReport } from './seal-thread.js';
import { sealAll, type SealJob } from './sealed-release.js';

const port = parentPort!;
port.on('message', ({ id, job }: { id: number; job: SealJob }) => {
  void sealAll(job, (sealed, failure) => {
    const report: SealReport = failure ? { id, sealed, failure: { code: failure.code, message: failure.message } } : { id, sealed };
    port.postMessage(report);
  });
});
