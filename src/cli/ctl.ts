/** `nxt-server ctl <command…>`: one console command in the running server, for scripts. */
import { sendControl } from '../server/control-client.js';
import { exitWithError } from './exit-codes.js';

export async function runCtl(stateDir: string, words: string[]): Promise<void> {
  try {
    const ok = await sendControl(stateDir, words, (text) => process.stdout.write(text));
    process.exitCode = ok ? 0 : 1;
  } catch (err) {
    exitWithError('nxt-server ctl', err);
  }
}
