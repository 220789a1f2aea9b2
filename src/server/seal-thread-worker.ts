/** The sealing thread (seal-thread.ts): seals each job it is given, reporting every block. */
import { getPriority, setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import type { SealReport, SealRequest } from './seal-thread.js';
import { sealAll, warmSealing } from './sealed-release.js';
import { GarbagePace } from '../util/garbage.js';

const port = parentPort!;

/**
 * Sealing runs below the threads that send and receive: it only has to stay ahead of the sending
 * (on the benchmark VM it sealed 128 MiB in 150–190 ms of its CPU, ~0.7–0.9 GB/s, where a push
 * sends ~0.25), and where they want the same CPU (a two-core machine, the server's devices beside
 * it) they should have it. Alternated 128 MiB pushes on loopback, 15 a side, twice: medians 1037
 * → 928 ms and 978 → 942 ms. On Linux a nice value is the thread's own (`0`: this thread);
 * elsewhere it would be the whole process's, which stays as it is. Raising it needs no privilege.
 */
const SEALING_NICE_STEP = 10;
if (process.platform === 'linux') {
  // Threads this one starts would take its nice value; it starts none. (libuv's thread pool,
  // whose threads take the nice value of the thread that started it, is the process's, started
  // by the main thread's module loader before any worker exists.)
  try {
    setPriority(0, Math.min(19, getPriority(0) + SEALING_NICE_STEP));
  } catch { /* left as it is */ }
}
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
