import { Worker } from 'node:worker_threads';

/**
 * A long-lived helper thread (sealing, hashing) running the script at `url`. It does not keep
 * the process alive; `stopped` hears once of its end, an uncaught error or an exit, with why.
 */
export function startHelperThread<Reply>(url: URL, onReply: (reply: Reply) => void, stopped: (worker: Worker, why: string) => void): Worker {
  const worker = new Worker(url);
  worker.unref();
  worker.on('message', onReply);
  worker.on('error', (err) => stopped(worker, err.message));
  worker.on('exit', (code) => stopped(worker, `exit code ${code}`));
  return worker;
}
