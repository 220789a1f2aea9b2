/**
 * How both programs stop: `exit`, SIGINT or SIGTERM close everything once and exit 0. The end of
 * standard input does not stop them (a service manager or `docker run` without -i gives none).
 */
export function lifecycle(program: string, closeAll: () => Promise<void>): { stop: () => void; inputEnded: () => void } {
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void closeAll().finally(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return {
    stop,
    inputEnded: () => {
      if (!stopping) process.stdout.write(`input closed; the ${program} keeps running (stop it with SIGTERM or Ctrl-C)\n`);
    },
  };
}

/**
 * Standard output or error closed under a running program (`nxt-server | tee log` with tee
 * stopped, `nxt-server ctl help | head -3`): Node reports the broken pipe as an 'error' event,
 * which, unhandled, ends the process with a stack trace. A fleet's server or a device must not
 * stop because the reader of its log did, nor a ctl command (a push) half-way because its output
 * is no longer read: what is printed from then on is dropped, and the program goes on.
 */
export function keepRunningWithoutOutput(): void {
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
}
