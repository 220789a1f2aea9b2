/**
 * `nxt-server ctl <command…>`: scripts (cron, CI) drive a running server through a Unix socket in
 * its state dir, with the same commands as the console. The exchange is described in
 * control-client.ts (the script's end). The socket is 0600: only the server's user may use it.
 */
import { chmodSync, existsSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { runCommandWords, type Command } from '../util/repl.js';
import { CONTROL_SOCKET, CTL_SPOOL_PREFIX, type ControlRequest } from './control-client.js';

export { CONTROL_SOCKET };
/** A request longer than this is refused (nothing legitimate is that long). */
const MAX_LINE = 64 * 1024;

/** What a command run for ctl writes to: its output and data for scripts (its errors, thrown,
 *  go to the error channel). */
export interface ControlOutput {
  say(line: string): void;
  data(value: unknown): void;
  /** The caller's directory: relative paths in the command start here. */
  readonly cwd: string;
  /** Files the command is given must be under this folder (the HTTP API's uploads). */
  readonly filesUnder?: string;
}

/** Listen for ctl connections; `commandsFor(out)` builds the commands writing to one connection. */
export function listenControl(stateDir: string, commandsFor: (out: ControlOutput) => Record<string, Command>): Promise<Server> {
  const path = join(stateDir, CONTROL_SOCKET);
  // Left by a server that was killed: the state dir lock says no other server is running.
  if (existsSync(path)) unlinkSync(path);
  // Copies of files left by a ctl that was killed (-9), or by a machine that stopped under it:
  // no command will use them (a ctl's command needs this server, which is only now listening).
  for (const name of readdirSync(stateDir)) {
    if (name.startsWith(CTL_SPOOL_PREFIX)) rmSync(join(stateDir, name), { recursive: true, force: true });
  }
  const server = createServer((sock) => {
    let buffered = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined); // the script went away: nothing to tell it
    sock.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0 && buffered.length <= MAX_LINE) return;
      sock.removeAllListeners('data');
      const send = (channel: string, text: string): void => {
        if (sock.destroyed) return;
        // One line per channel mark: a multi-line text goes as several.
        for (const line of text.replace(/\n$/, '').split('\n')) sock.write(`${channel}${line}\n`);
      };
      const request = nl < 0 ? undefined : parseRequest(buffered.slice(0, nl));
      if (!request) {
        send('2', 'error: not a ctl request (this server and this ctl are of different versions?)');
        sock.end('\u00001');
        return;
      }
      const out: ControlOutput = {
        say: (line) => send('1', line), data: (value) => send('d', JSON.stringify(value)), cwd: request.cwd,
      };
      void runCommandWords(commandsFor(out), request.words, (text) => send('2', text))
        .then((status) => sock.end(`\u0000${status}`));
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

function parseRequest(line: string): ControlRequest | undefined {
  try {
    const r = JSON.parse(line) as Partial<ControlRequest>;
    if (!Array.isArray(r.words) || !r.words.every((w) => typeof w === 'string') || typeof r.cwd !== 'string' || !r.cwd.startsWith('/')) return undefined;
    return { words: r.words, cwd: r.cwd };
  } catch {
    return undefined;
  }
}
