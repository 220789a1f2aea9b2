/**
 * Where a program's event lines go when nobody is at its console (a service, a container, a
 * redirected run): log records with a time and a level. On a terminal, human lines; otherwise
 * JSON lines (pino), which journald, Docker and log shippers read as they are. Warnings and errors
 * go to stderr, the rest to stdout.
 *
 * The interactive console (util/repl.ts) prints its lines as they are; it hands them here only
 * when it runs headless.
 */
import type { Logger } from 'pino';

export type Level = 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';

export interface LogSink {
  write(level: Level, message: string): void;
  /** Everything written is out (before the process exits). */
  flush(): void;
}

/** JSON when stdout is not a terminal, unless asked. */
export function defaultLogFormat(stdoutIsTty: boolean): LogFormat {
  return stdoutIsTty ? 'text' : 'json';
}

export function parseLogFormat(text: string): LogFormat {
  if (text === 'text' || text === 'json') return text;
  throw new Error(`--log-format "${text}" must be text or json`);
}

/** Human lines: "2026-11-30T10:00:00.000Z WARN  message". */
export function textSink(out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr, now = (): Date => new Date()): LogSink {
  return {
    write: (level, message) => (level === 'info' ? out : err).write(`${now().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}\n`),
    flush: () => undefined,
  };
}

/** JSON lines through pino (loaded only when wanted: a client on a terminal never pays for it). */
export async function jsonSink(program: string): Promise<LogSink> {
  const { default: pino } = await import('pino');
  const streams = pino.multistream([
    { level: 'info', stream: pino.destination({ dest: 1, sync: true }) },
    { level: 'warn', stream: pino.destination({ dest: 2, sync: true }) },
  ], { dedupe: true });
  const logger: Logger = pino({
    base: { program, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // "warn", not 40: readable in journalctl -o cat and greppable.
    formatters: { level: (label) => ({ level: label }) },
  }, streams);
  return { write: (level, message) => logger[level](message), flush: () => logger.flush() };
}

export async function createLogSink(program: string, format: LogFormat): Promise<LogSink> {
  return format === 'json' ? jsonSink(program) : textSink();
}
