/**
 * The page's only way to the server: its public HTTP API (/api/v1, described at
 * /api/v1/openapi.json) with the operator's API token, and its event stream. Anything the page
 * shows, a script can get the same way.
 */

const TOKEN_KEY = 'nxt-token';

export function savedToken(): string | undefined {
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

export function saveToken(token: string | undefined): void {
  if (token === undefined) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The command envelope (as `nxt-server ctl --json` prints it). */
export interface Envelope {
  readonly ok: boolean;
  readonly status: number;
  readonly output: string[];
  readonly errors: string[];
  readonly data: unknown[];
}

async function call<T>(method: string, path: string, body?: BodyInit, type = 'application/json'): Promise<T> {
  const res = await fetch(`/api/v1/${path}`, {
    method, body, headers: { authorization: `Bearer ${savedToken() ?? ''}`, ...(body === undefined ? {} : { 'content-type': type }) },
  });
  const text = await res.text();
  let value: unknown;
  try { value = JSON.parse(text); } catch { value = { error: text }; }
  if (!res.ok) {
    const v = value as { error?: string; errors?: string[] };
    throw new ApiError(res.status, v.error ?? v.errors?.join('\n') ?? `${res.status} ${res.statusText}`);
  }
  return value as T;
}

export const get = <T>(resource: string): Promise<T> => call<T>('GET', resource);

/** A console command, as the API runs it (words as typed). */
export const command = (words: string[]): Promise<Envelope> => call<Envelope>('POST', 'commands', JSON.stringify({ words }));

export const decide = (id: string, action: 'approve' | 'reject' | 'revoke'): Promise<Envelope> => call<Envelope>('POST', `devices/${encodeURIComponent(id)}/${action}`);

/** Upload a module; the server keeps it for a push (its path comes back). */
export const upload = (file: File): Promise<{ file: string; name: string; size: number }> =>
  call('POST', `releases?name=${encodeURIComponent(file.name)}`, file, 'application/octet-stream');

// --- what the resources hold: their JSON, as the console's --json prints it and openapi.json
// describes it. The shapes the server declares in src/server/views.ts (no imports there, so the
// page can take its types from it); the rest the page keeps its own copy of: compiled for the
// browser, it cannot take the server's modules (or Node's types) that declare them.

export type { DeviceView as Device, RequestView as Request } from '../../src/server/views.js';

/** A push result or probation outcome (the fields the page shows of GET /history's entries). */
export interface HistoryEntry {
  readonly at: string; readonly client: string; readonly module: string; readonly version: string; readonly result: string; readonly message: string;
}

/** GET /releases: one line per module pushed (its first and last push, devices running it). */
export interface ReleaseSummary {
  readonly module: string; readonly version: string; readonly sha256: string;
  readonly firstPushed: string; readonly lastPushed: string; readonly installedOn: number; readonly failures: number;
  /** What the server keeps of it (absent for a release it no longer has). */
  readonly size?: number; readonly signed?: string; readonly for?: Record<string, string>;
}

export interface Job {
  readonly id: number;
  readonly device: string;
  readonly kind: string;
  readonly state: string;
  readonly result?: string;
  readonly message?: string;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export type Step = 'waiting' | 'sending' | 'trial' | 'committed' | 'already' | 'failed' | 'rolled-back';

export interface Campaign {
  readonly id: number;
  readonly spec: {
    readonly release: { readonly name: string; readonly version: string };
    readonly target: string;
    readonly stages: readonly ({ count: number } | { percent: number })[];
    readonly successPercent: number;
  };
  readonly state: 'running' | 'paused' | 'done' | 'cancelled';
  readonly reason?: string;
  readonly stage: number;
  readonly members: readonly string[];
  readonly devices: Record<string, { step: Step; detail?: string }>;
  readonly counts: Record<Step, number>;
  readonly reached: number;
}

export interface Progress {
  readonly id: string;
  readonly module: string;
  readonly release: string;
  readonly phase: string;
  readonly bytes: number;
  readonly size: number;
}

/**
 * The server's events (server-sent events over fetch, so the token goes in a header, not the
 * URL). Reconnects after a second when the stream ends; returns the way to stop.
 */
export function listen(on: (event: string, data: unknown) => void, connected: (up: boolean) => void): () => void {
  let stopped = false;
  let controller: AbortController | undefined;
  const run = async (): Promise<void> => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const res = await fetch('/api/v1/events', { headers: { authorization: `Bearer ${savedToken() ?? ''}` }, signal: controller.signal });
        if (!res.ok || !res.body) throw new Error(String(res.status));
        connected(true);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event && data) on(event, JSON.parse(data));
          }
        }
      } catch {
        // The server went away, or the page stopped listening.
      }
      connected(false);
      if (!stopped) await new Promise((r) => setTimeout(r, 1000));
    }
  };
  void run();
  return () => { stopped = true; controller?.abort(); };
}
