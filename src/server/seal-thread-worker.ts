/** The sealing thread (seal-thread.ts): seals each job it is given, reporting every block. */
import { parentPort } from 'node:worker_threads';
import type { SealReport, SealRequest } from './seal-thread.js';
import { sealAll, warmSealing } from './sealed-release.js';
import { GarbagePace } from '../util/garbage.js';

const port = parentPort!;
/** Every block sealed leaves its ciphertexts as garbage (util/garbage.ts). */
const garbage = new GarbagePace();
/** The jobs still sealing, to stop by id. */
const running = new Map<number, AbortController>();
port.on('message', (msg: SealRequest) => {
  if ('warm' in msg) {
    // Asked as the thread starts: its buffers and cipher readied, and an answer (under id 0,
    // which no seal has), so that both sides have taken a message before the first push's.
    warmSealing();
    port.postMessage({ id: 0, sealed: 0 } satisfies SealReport);
    return;
  }
  if ('stop' in msg) {
    running.get(msg.stop)?.abort();
    return;
  }
  const { id, job } = msg;
  const stop = new AbortController();
  running.set(id, stop);
  let reported = 0;
  void sealAll(job, (sealed, failure, identity) => {
    garbage.spent((sealed - reported) * job.chunkSize);
    reported = sealed;
    const report: SealReport = failure ? { id, sealed, failure: { code: failure.code, message: failure.message } } : { id, sealed, ...(identity === undefined ? {} : { identity }) };
    port.postMessage(report);
  }, stop.signal).finally(() => running.delete(id));
});
