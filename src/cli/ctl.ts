/**
 * `nxt-server ctl [--json] <command…>`: one console command in the running server, for scripts.
 * Output on stdout, errors and warnings on stderr, exit status 0 done, 1 failed (a push that
 * failed on any device included), 2 bad usage. With --json, one JSON document on stdout instead:
 *   {"ok": true, "status": 0, "command": [...], "output": [lines], "errors": [lines], "data": [...]}
 * (data: what the command reports for scripts, e.g. a push's outcome per device; or the
 * command's own --json output, parsed).
 */
import { sendControl } from '../server/control-client.js';
import { exitWithError } from './exit-codes.js';

export async function runCtl(stateDir: string, words: string[], json = false): Promise<void> {
  const output: string[] = [];
  const errors: string[] = [];
  const data: unknown[] = [];
  const request = { words, cwd: process.cwd() };
  try {
    const status = await sendControl(stateDir, request, json
      ? { out: (l) => output.push(l), err: (l) => errors.push(l), data: (v) => data.push(v) }
      : { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`), data: () => undefined });
    const ok = status === 0;
    process.exitCode = status;
    if (json) {
      // A command asked for its own --json prints one JSON document: hand it over parsed.
      if (data.length === 0 && words.includes('--json')) {
        try { data.push(JSON.parse(output.join('\n'))); output.length = 0; } catch { /* not JSON after all: leave it as lines */ }
      }
      process.stdout.write(`${JSON.stringify({ ok, status, command: words, output, errors, data })}\n`);
    }
  } catch (err) {
    if (json) {
      process.stdout.write(`${JSON.stringify({ ok: false, status: 1, command: words, output, errors: [...errors, err instanceof Error ? err.message : String(err)], data })}\n`);
      process.exitCode = 1;
      return;
    }
    exitWithError('nxt-server ctl', err);
  }
}
