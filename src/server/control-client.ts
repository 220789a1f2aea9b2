/**
 * The script's end of `nxt-server ctl` (control-socket.ts has the server's end). Kept apart, with
 * nothing but node:net behind it, so that `ctl` starts in the time Node itself takes: a script
 * pays this start on every command.
 *
 * The exchange, one command per connection:
 *   → one line of JSON: {"words": ["push", "m.mjs"], "cwd": "/home/op"} (cwd: where relative
 *     paths in the command start: the caller's directory, not the server's)
 *   ← lines, each led by its channel: "1" output, "2" errors and warnings, "d" a JSON value the
 *     command reports for scripts (a push's outcome per device); then "\0" and the exit status ("0"
 *     done, "1" failed, "2" asked wrongly), and the server closes.
 */
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';

export const CONTROL_SOCKET = 'ctl.sock';
/** Where ctl puts copies of the files a command names: a fresh folder in the server's state dir
 *  with this prefix, deleted as ctl exits (and, left by a ctl that was killed, at the server's
 *  next start). */
export const CTL_SPOOL_PREFIX = 'ctl-spool-';

export interface ControlRequest {
  readonly words: string[];
  readonly cwd: string;
}

export interface ControlSink {
  out(line: string): void;
  err(line: string): void;
  data(value: unknown): void;
}

/** Send one command to the server in `stateDir`; resolves with its exit status. */
export function sendControl(stateDir: string, request: ControlRequest, sink: ControlSink): Promise<number> {
  const path = join(stateDir, CONTROL_SOCKET);
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buffered = '';
    let status: number | undefined;
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(request)}\n`));
    sock.on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const text = line.slice(1);
        if (line[0] === '1') sink.out(text);
        else if (line[0] === '2') sink.err(text);
        else if (line[0] === 'd') { try { sink.data(JSON.parse(text)); } catch { sink.err(`(unreadable data from the server: ${text.slice(0, 80)})`); } }
      }
      if (buffered.length === 2 && buffered[0] === '\u0000') status = Number(buffered[1]);
    });
    sock.on('end', () => {
      if (status !== undefined) resolve(status);
      else reject(new NxtError('ctl-broken', 'the server closed the connection before the command finished'));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? new NxtError('no-server', `no server is running with state dir ${stateDir} (no ${path})`)
        : err.code === 'EACCES'
          ? new NxtError('ctl-failed', `${path} belongs to the server's user: run ctl as that user (e.g. sudo -u nxt nxt-ctl …)`)
          : new NxtError('ctl-failed', `cannot reach the server at ${path}: ${errorMessage(err)}`));
    });
  });
}

/** What `ctl --json` prints and the HTTP API answers: everything one command said. */
export interface Envelope {
  readonly ok: boolean;
  readonly status: number;
  readonly command: readonly string[];
  readonly output: string[];
  readonly errors: string[];
  readonly data: unknown[];
}

/** The envelope of a command that ended with `status`; a command asked for its own --json
 *  printed one JSON document, which is handed over parsed, as data. */
export function envelope(command: readonly string[], status: number, output: string[], errors: string[], data: unknown[]): Envelope {
  if (data.length === 0 && status === 0 && command.includes('--json')) {
    try { data.push(JSON.parse(output.join('\n'))); output.length = 0; } catch { /* lines after all */ }
  }
  return { ok: status === 0, status, command, output, errors, data };
}
