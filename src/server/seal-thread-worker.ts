/** The sealing thread (seal-thread.ts): seals each job it is given, reporting every block. */
import { parentPort } from 'node:worker_threads';
import type { SealReport } from './seal-thread.js';
import { sealAll, warmSealing, type SealJob } from './sealed-release.js';

const port = parentPort!;
port.on('message', (msg: { id: number; job: SealJob } | { warm: true }) => {
  if ('warm' in msg) {
    // Asked as the thread starts: its buffers and cipher readied, and an answer (under id 0,
    // which no seal has), so that both sides have taken a message before the first push's.
    warmSealing();
    port.postMessage({ id: 0, sealed: 0 } satisfies SealReport);
    return;
  }
  const { id, job } = msg;
  void sealAll(job, (sealed, failure, digest) => {
    const report: SealReport = failure ? { id, sealed, failure: { code: failure.code, message: failure.message } } : { id, sealed, ...(digest === undefined ? {} : { digest }) };
    port.postMessage(report);
  });
});
