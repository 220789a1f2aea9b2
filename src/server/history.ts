/**
 * The record of every push result, kept in the server's state dir as JSON lines
 * (`history.jsonl`): appended and fsynced one entry at a time, so a server killed at any moment
 * loses at most the entry it was writing, and a torn last line is skipped when read.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface HistoryEntry {
  /** ISO 8601 wall-clock time of the result. */
  readonly at: string;
  readonly client: string;
  readonly address: string;
  readonly module: string;
  readonly version: string;
  readonly sha256: string;
  /** 'ok' or the failure reason's code name. */
  readonly result: string;
  readonly message: string;
  readonly elapsedMs: number;
  readonly resent: number;
}

export class History {
  private readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'history.jsonl');
  }

  append(entry: HistoryEntry): void {
    const fd = openSync(this.path, 'a', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(entry)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Entries oldest first, optionally only for clients whose id starts with `clientPrefix`. */
  list(clientPrefix?: string): HistoryEntry[] {
    if (!existsSync(this.path)) return [];
    const entries: HistoryEntry[] = [];
    for (const line of readFileSync(this.path, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        const e = JSON.parse(line) as HistoryEntry;
        if (clientPrefix === undefined || e.client.startsWith(clientPrefix)) entries.push(e);
      } catch {
        // A line torn by a crash mid-write: skip it.
      }
    }
    return entries;
  }
}
