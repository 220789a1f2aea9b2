/**
 * `nxt-server ctl <command…>`: scripts (cron, CI) drive a running server through a Unix socket in
 * its state dir, with the same commands as the console. One command per connection: the client
 * sends a line, the server runs it and streams its output back, then a NUL byte and the status
 * ("0" ok, "1" failed), and closes. The socket is 0600: only the server's user may use it.
 */
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { runCommandLine, type Command } from '../util/repl.js';

import { CONTROL_SOCKET } from './control-client.js';

export { CONTROL_SOCKET };
/** A command line longer than this is refused (nothing legitimate is that long). */
const MAX_LINE = 64 * 1024;

/** Listen for ctl connections; `commandsFor(say)` builds the commands writing to one connection. */
export function listenControl(stateDir: string, commandsFor: (say: (line: string) => void) => Record<string, Command>): Promise<Server> {
  const path = join(stateDir, CONTROL_SOCKET);
  // Left by a server that was killed: the state dir lock says no other server is running.
  if (existsSync(path)) unlinkSync(path);
  const server = createServer((sock) => {
    let buffered = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined); // the script went away: nothing to tell it
    sock.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0 && buffered.length <= MAX_LINE) return;
      sock.removeAllListeners('data');
      const line = nl < 0 ? '' : buffered.slice(0, nl);
      const write = (text: string): void => { if (!sock.destroyed) sock.write(text); };
      const run = nl < 0
        ? Promise.resolve((write('error: command line too long\n'), false))
        : runCommandLine(commandsFor((l) => write(`${l}\n`)), line, write);
      void run.then((ok) => sock.end(`\u0000${ok ? 0 : 1}`));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      chmodSync(path, 0o600);
      server.off('error', reject);
      resolve(server);
    });
  });
}
