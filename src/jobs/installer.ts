/**
 * Hand a received file to an installer the device's own config names (`"installers": {"deb":
 * "apt-get install -y {file}"}`). The server chooses only which one; the command is the device's.
 * It runs without a shell (the words of the command, `{file}` replaced by the file's path), bounded
 * in time (killed after `timeoutMs`), and its exit code and the tail of its output are reported.
 */
import { spawn } from 'node:child_process';

/** How much of the installer's output the job result carries (the end: where errors are). */
const TAIL_CHARS = 1500;

export interface InstallOutcome {
  readonly ok: boolean;
  readonly message: string;
}

/** The command's words with `{file}` replaced: no shell ever sees the path. */
export function installerArgv(command: string, file: string): string[] {
  const words = command.trim().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) throw new Error('the installer command is empty');
  const argv = words.map((w) => w.replaceAll('{file}', file));
  return words.some((w) => w.includes('{file}')) ? argv : [...argv, file];
}

export function runInstaller(name: string, command: string, file: string, timeoutMs: number): Promise<InstallOutcome> {
  return new Promise((resolve) => {
    let argv: string[];
    try {
      argv = installerArgv(command, file);
    } catch (err) {
      resolve({ ok: false, message: `installer ${name}: ${(err as Error).message}` });
      return;
    }
    let tail = '';
    const keep = (d: Buffer): void => { tail = (tail + d.toString()).slice(-TAIL_CHARS); };
    // A process group of its own: on timeout the installer and everything it started is killed.
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    let settled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
    }, timeoutMs);
    const said = (): string => (tail.trim() === '' ? '' : `; output: ${tail.trim().replace(/\s+/g, ' ')}`);
    const settle = (outcome: InstallOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve(outcome);
    };
    child.on('error', (err) => settle({ ok: false, message: `installer ${name} (${argv[0]}) could not start: ${err.message}` }));
    const ended = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (timedOut) settle({ ok: false, message: `installer ${name} did not finish within ${Math.round(timeoutMs / 1000)} s (killed)${said()}` });
      else if (code === 0) settle({ ok: true, message: `installed with ${name}: exit 0${said()}` });
      else settle({ ok: false, message: `installer ${name} exited ${code ?? signal}${said()}` });
    };
    // Its output is complete at 'close'; a process it left behind may hold the pipes open, so
    // the exit itself decides a moment later at the latest.
    child.on('close', ended);
    child.on('exit', (code, signal) => setTimeout(() => ended(code, signal), 250).unref());
  });
}
