/**
 * Console or log: a program with someone (or a script) at its standard input runs its console
 * (`NxtServer# `); one started as a service (standard input /dev/null, or --headless) has no
 * console and writes log records instead: time stamps, levels, JSON lines unless its output is a
 * terminal (--log-format to choose), warnings on stderr, never a prompt.
 */
import { fstatSync, statSync } from 'node:fs';
import { createLogSink, defaultLogFormat, parseLogFormat, type Level, type LogSink } from '../util/log.js';
import { NxtError } from '../errors.js';

export interface ConsoleMode {
  /** Set when there is no console: where every line goes. */
  readonly headless: LogSink | undefined;
  /** A line of the program's own (start-up, warnings) before or beside the console. */
  note(line: string, level?: Level): void;
}

export const CONSOLE_MODE_HELP = {
  headless: 'no console: write log records only (the default when standard input is /dev/null, as under systemd)',
  logFormat: 'log records as text or json (default: text on a terminal, json otherwise); with --headless',
};

export async function consoleMode(program: string, flags: { headless?: boolean; logFormat?: string }): Promise<ConsoleMode> {
  let format;
  try {
    format = flags.logFormat === undefined ? defaultLogFormat(process.stdout.isTTY === true) : parseLogFormat(flags.logFormat);
  } catch (err) {
    throw new NxtError('usage', (err as Error).message);
  }
  const headless = flags.headless === true || stdinIsNull() ? await createLogSink(program, format) : undefined;
  return {
    headless,
    note: (line, level = 'info') => {
      if (headless) headless.write(level, line);
      else (level === 'info' ? process.stdout : process.stderr).write(`${line}\n`);
    },
  };
}

/** Standard input is /dev/null (systemd's default, `< /dev/null`) or closed: nobody can type. */
function stdinIsNull(): boolean {
  if (process.stdin.isTTY) return false;
  try {
    const st = fstatSync(0);
    const devNull = statSync('/dev/null');
    return st.isCharacterDevice() && st.rdev === devNull.rdev;
  } catch {
    return true; // no standard input at all
  }
}
