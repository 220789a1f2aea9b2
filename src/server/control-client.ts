/**
 * The script's end of `nxt-server ctl` (control-socket.ts has the server's end and the framing).
 * Kept apart, with nothing but node:net behind it, so that `ctl` starts in the time Node itself
 * takes: a script pays this start on every command.
 */
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';

export const CONTROL_SOCKET = 'ctl.sock';

/** Send one command to the server in `stateDir`; resolves with its output and whether it succeeded. */
export function sendControl(stateDir: string, words: string[], onOutput: (text: string) => void): Promise<boolean> {
  const path = join(stateDir, CONTROL_SOCKET);
  const line = words.map((w) => (/[\s"']/.test(w) ? `"${w.replace(/"/g, '')}"` : w)).join(' ');
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let tail = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${line}\n`));
    sock.on('data', (chunk: string) => {
      // Hold back the last two characters: they may be the NUL and status.
      const text = tail + chunk;
      onOutput(text.slice(0, -2));
      tail = text.slice(-2);
    });
    sock.on('end', () => {
      if (tail.length === 2 && tail[0] === '\u0000') resolve(tail[1] === '0');
      else { onOutput(tail); reject(new NxtError('ctl-broken', 'the server closed the connection before the command finished')); }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? new NxtError('no-server', `no server is running with state dir ${stateDir} (no ${path})`)
        : new NxtError('ctl-failed', `cannot reach the server at ${path}: ${errorMessage(err)}`));
    });
  });
}
