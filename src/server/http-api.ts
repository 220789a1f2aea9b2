/**
 * The HTTP API (`--http ADDR:PORT`): JSON over HTTP, authenticated by API tokens
 * (`Authorization: Bearer nxt_…`, made with `token create NAME` at the console). It is a thin front
 * end over the console's commands, as `ctl` is: every command answers here with the same envelope
 * as `ctl --json` — {ok, status, command, output, errors, data} — and the read-only resources are
 * those commands' own --json output. Described in openapi.json (GET /api/v1/openapi.json).
 */
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { NxtError, errorMessage } from '../errors.js';
import { runCommandWords, type Command } from '../util/repl.js';
import type { ApiTokens } from './api-tokens.js';
import type { ControlOutput } from './control-socket.js';
import { envelope, type Envelope } from './control-client.js';
import { OPENAPI } from './openapi.js';

/** JSON bodies larger than this are refused; module uploads have their own limit. */
const MAX_JSON_BYTES = 1024 * 1024;

export interface HttpApiOptions {
  readonly tokens: ApiTokens;
  /** Random bytes (upload folders' names). */
  readonly random: (n: number) => Uint8Array;
  readonly stateDir: string;
  readonly version: string;
  readonly maxUploadBytes: number;
  readonly commandsFor: (out: ControlOutput) => Record<string, Command>;
}

/** Run one console command as the API does: everything it says, collected. */
export async function runForApi(commandsFor: HttpApiOptions['commandsFor'], words: readonly string[], cwd: string): Promise<Envelope> {
  const output: string[] = [];
  const errors: string[] = [];
  const data: unknown[] = [];
  const out: ControlOutput = { say: (l) => output.push(...l.split('\n')), data: (v) => data.push(v), cwd };
  const status = await runCommandWords(commandsFor(out), words, (text) => errors.push(...text.replace(/\n$/, '').split('\n')));
  return envelope(words, status, output, errors, data);
}

/** GET resources: each the --json output of a console command. */
const RESOURCES: Record<string, string[]> = {
  devices: ['clients', '--json'],
  requests: ['requests', '--json'],
  releases: ['releases', '--json'],
  history: ['history', '--json'],
  status: ['status', '--json'],
  versions: ['versions', '--json'],
  jobs: ['jobs', '--json'],
  results: ['results', '--json'],
};

/** The API as a request handler (cli/ serves it: only cli/ and net/ open sockets). */
export function apiHandler(o: HttpApiOptions): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(o, req, res).catch((err: unknown) => send(res, 500, { error: errorMessage(err) }));
  };
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** HTTP status for a command's exit status: done, failed, asked wrongly. */
const httpStatus = (e: Envelope): number => (e.status === 0 ? 200 : e.status === 2 ? 400 : 422);

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_JSON_BYTES) throw new NxtError('too-large', `a JSON body is at most ${MAX_JSON_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    const v = JSON.parse(text === '' ? '{}' : text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (err) {
    throw new NxtError('usage', `the body must be a JSON object: ${errorMessage(err)}`);
  }
}

async function handle(o: HttpApiOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://api');
  const path = url.pathname.replace(/\/+$/, '');
  if (req.method === 'GET' && path === '/api/v1/health') return send(res, 200, { ok: true, version: o.version });
  if (req.method === 'GET' && path === '/api/v1/openapi.json') return send(res, 200, OPENAPI);
  if (!path.startsWith('/api/v1/')) return send(res, 404, { error: `no such resource: ${url.pathname} (the API is under /api/v1/, described at /api/v1/openapi.json)` });

  const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  if (!auth || o.tokens.check(auth[1]!) === undefined) {
    res.setHeader('www-authenticate', 'Bearer');
    return send(res, 401, { error: 'a valid API token is needed: Authorization: Bearer nxt_… (token create NAME at the server console)' });
  }
  const run = async (words: string[]): Promise<void> => {
    const e = await runForApi(o.commandsFor, words, o.stateDir);
    send(res, httpStatus(e), e);
  };
  const rest = path.slice('/api/v1/'.length).split('/').map(decodeURIComponent);

  try {
    if (req.method === 'GET' && rest.length === 1 && Object.hasOwn(RESOURCES, rest[0]!)) {
      const e = await runForApi(o.commandsFor, RESOURCES[rest[0]!]!, o.stateDir);
      return send(res, httpStatus(e), e.ok ? e.data[0] ?? [] : e);
    }
    if (req.method === 'POST' && rest.length === 1 && rest[0] === 'commands') {
      const body = await readJson(req);
      const words = body.words;
      if (!Array.isArray(words) || words.length === 0 || !words.every((w) => typeof w === 'string')) throw new NxtError('usage', '"words" must be a list of strings: a console command, e.g. ["push", "/path/m_2_0.mjs", "--to", "kiosks"]');
      return await run(words as string[]);
    }
    if (req.method === 'POST' && rest.length === 3 && rest[0] === 'devices' && ['approve', 'reject', 'revoke'].includes(rest[2]!)) {
      return await run([rest[2]!, rest[1]!]);
    }
    if (req.method === 'POST' && rest.length === 3 && rest[0] === 'devices' && rest[2] === 'tags') {
      const body = await readJson(req);
      if (typeof body.group !== 'string') throw new NxtError('usage', '{"group": "NAME"} is the body');
      return await run(['tag', rest[1]!, body.group]);
    }
    if (req.method === 'POST' && rest.length === 1 && rest[0] === 'releases') {
      return await upload(o, url, req, res);
    }
  } catch (err) {
    const usage = err instanceof NxtError && (err.code === 'usage' || err.code === 'too-large');
    return send(res, usage ? (err.code === 'too-large' ? 413 : 400) : 500, { error: errorMessage(err) });
  }
  return send(res, 404, { error: `no such resource: ${req.method} ${url.pathname} (see /api/v1/openapi.json)` });
}

/** POST /api/v1/releases?name=NAME with the module's bytes: kept for a push (words ["push", file]). */
async function upload(o: HttpApiOptions, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const name = url.searchParams.get('name') ?? '';
  if (!/^[\w.-]{1,128}$/.test(name) || name.startsWith('.')) throw new NxtError('usage', '?name= is the module\'s file name (letters, digits, "_", "-", "."), e.g. router_2_0.mjs');
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > o.maxUploadBytes) {
    req.resume(); // read and dropped, so that the sender gets to read the answer
    throw new NxtError('too-large', `a module is at most ${o.maxUploadBytes} bytes here`);
  }
  const dir = join(o.stateDir, 'api-uploads', Buffer.from(o.random(8)).toString('hex'));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, name);
  let size = 0;
  try {
    await pipeline(req, async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        size += chunk.length;
        if (size > o.maxUploadBytes) throw new NxtError('too-large', `a module is at most ${o.maxUploadBytes} bytes here`);
        yield chunk;
      }
    }, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  } catch (err) {
    // Half a module is no module: nothing is left behind.
    rmSync(dir, { recursive: true, force: true });
    req.resume();
    throw err;
  }
  send(res, 201, { file, name, size, push: ['push', file] });
}
