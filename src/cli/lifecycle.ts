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
