/**
 * The HTTP API (`--http ADDR:PORT`): JSON over HTTP, authenticated by API tokens
 * (`Authorization: Bearer nxt_…`, made with `token create NAME` at the console). It is a thin front
 * end over the console's commands, as `ctl` is. Every command has typed input and output
 * (typed-command.ts) and runs directly: POST /api/v1/commands/NAME with its input as JSON, and the
 * GET resources with it in the query string; the output is returned as it is. Any command also
 * runs from words (POST /api/v1/commands {"words": […]}) and answers with the envelope of
 * `ctl --json` — {ok, status, command, output, errors, data}. Described in openapi.json
 * (GET /api/v1/openapi.json).
 */
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { NxtError, errorMessage } from '../errors.js';
import { runCommandWords, type Command } from '../util/repl.js';
import type { ApiTokens } from './api-tokens.js';
import type { ControlOutput } from './control-socket.js';
import { envelope, type Envelope } from './control-client.js';
import { OPENAPI, openApiFor } from './openapi.js';
import { runWithJson, type AnyTypedCommand } from './typed-command.js';

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
  /** The commands with typed input and output (typed-command.ts): GET resources and
   *  POST /api/v1/commands/NAME with a JSON body run them directly. */
  readonly typed?: Record<string, AnyTypedCommand>;
  /** The dashboard's built files (index.html, assets/), served at / without a token: the page
   *  asks for one and uses only this API. */
  readonly webDir?: string;
  /** What happens in the server, for GET /api/v1/events (server-sent events): returns the way to
   *  stop listening. */
  readonly subscribe?: (listener: (event: string, data: unknown) => void) => () => void;
}

/** Where uploads go (POST /api/v1/releases), and the only files the API's commands may send. */
export const API_UPLOADS = 'api-uploads';
/** An upload is for a push or a job typed soon after (which keep copies of their own): kept a day. */
export const UPLOAD_KEPT_MS = 24 * 3600_000;

/** Delete the uploads older than `keptMs` at `now` (wall-clock ms). */
export function sweepUploads(stateDir: string, now: number, keptMs = UPLOAD_KEPT_MS): void {
  const root = join(stateDir, API_UPLOADS);
  let names: string[];
  try { names = readdirSync(root); } catch { return; }
  for (const name of names) {
    const dir = join(root, name);
    try {
      if (now - statSync(dir).mtimeMs >= keptMs) rmSync(dir, { recursive: true, force: true });
    } catch {
      // Gone meanwhile, or not ours to stat: looked at again next time.
    }
  }
}

/** Run one console command as the API does: everything it says, collected. */
export async function runForApi(commandsFor: HttpApiOptions['commandsFor'], words: readonly string[], cwd: string): Promise<Envelope> {
  const output: string[] = [];
  const errors: string[] = [];
  const data: unknown[] = [];
  const out: ControlOutput = { say: (l) => output.push(...l.split('\n')), data: (v) => data.push(v), cwd, filesUnder: join(cwd, API_UPLOADS) };
  const status = await runCommandWords(commandsFor(out), words, (text) => errors.push(...text.replace(/\n$/, '').split('\n')));
  return envelope(words, status, output, errors, data);
}

/** GET resources: each a typed command's output (its input from the query string: ?where=…&where=…,
 *  ?device=…&last=5, beside any `fixed`), as its --json prints it. */
const RESOURCES: Record<string, { typed: string; fixed?: Record<string, unknown> }> = {
  devices: { typed: 'clients' },
  requests: { typed: 'requests' },
  releases: { typed: 'releases' },
  history: { typed: 'history' },
  status: { typed: 'status' },
  versions: { typed: 'versions' },
  jobs: { typed: 'jobs' },
  results: { typed: 'results' },
  nodes: { typed: 'nodes' },
  rollouts: { typed: 'rollout', fixed: { action: 'status' } },
};

/** A typed command's input from a query string, by its schema: arrays from repeated keys,
 *  integers as numbers; the schema then judges it. */
function queryInput(c: AnyTypedCommand, query: URLSearchParams): Record<string, unknown> {
  const properties = (c.input as { properties?: Record<string, { type?: string }> }).properties ?? {};
  const input: Record<string, unknown> = {};
  for (const key of new Set(query.keys())) {
    const type = properties[key]?.type;
    input[key] = type === 'array' ? query.getAll(key) : type === 'integer' ? Number(query.get(key)) : query.get(key);
  }
  return input;
}

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
  if (req.method === 'GET' && o.webDir !== undefined && !path.startsWith('/api/')) return serveWeb(o.webDir, path, res);
  if (req.method === 'GET' && path === '/api/v1/health') return send(res, 200, { ok: true, version: o.version });
  if (req.method === 'GET' && path === '/api/v1/openapi.json') return send(res, 200, o.typed ? openApiFor(o.typed) : OPENAPI);
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
      const resource = RESOURCES[rest[0]!]!;
      const typed = o.typed?.[resource.typed];
      if (typed) return await runTyped(res, typed, { ...queryInput(typed, url.searchParams), ...resource.fixed }, o.stateDir, (output) => (typed.json ? typed.json(output) : output));
      const e = await runForApi(o.commandsFor, [resource.typed, '--json'], o.stateDir);
      return send(res, httpStatus(e), e.ok ? e.data[0] ?? [] : e);
    }
    // A typed command with its input as JSON: {"ok": true, "output": …} or an error.
    if (req.method === 'POST' && rest.length === 2 && rest[0] === 'commands' && o.typed && Object.hasOwn(o.typed, rest[1]!)) {
      const name = rest[1]!;
      return await runTyped(res, o.typed[name]!, await readJson(req), o.stateDir, (output) => ({ ok: true, command: name, output }));
    }
    if (req.method === 'GET' && rest.length === 1 && rest[0] === 'events' && o.subscribe) return events(o.subscribe, req, res);
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

/** Run a typed command and answer: its output (shaped by `body`), 400 for input that does not fit
 *  its schema, 422 with the error's code when the command refused (no such device, …) — the
 *  caller's to fix, as a console command's exit status 1. */
async function runTyped(res: ServerResponse, c: AnyTypedCommand, input: unknown, cwd: string, body: (output: unknown) => unknown): Promise<void> {
  let output: unknown;
  try {
    output = await runWithJson(c, input, cwd, join(cwd, API_UPLOADS));
  } catch (err) {
    if (!(err instanceof NxtError)) throw err;
    return send(res, err.code === 'usage' ? 400 : 422, { ok: false, code: err.code, error: errorMessage(err) });
  }
  // Ran, and failed where it matters (a push that failed on a device): 422, with what happened.
  const failure = c.failure?.(output);
  if (failure) return send(res, 422, { ok: false, code: failure.code, error: failure.message, output });
  send(res, 200, body(output));
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
  const dir = join(o.stateDir, API_UPLOADS, Buffer.from(o.random(8)).toString('hex'));
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

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json', '.woff2': 'font/woff2',
};

/** The dashboard's files: only plain names under webDir (no dot segments), index.html for the rest
 *  (the page's own routes). Nothing from elsewhere: the page loads nothing from the Internet. */
function serveWeb(webDir: string, path: string, res: ServerResponse): void {
  const name = path === '' || path === '/' ? 'index.html' : path.slice(1);
  const safe = /^[\w-]+(\/[\w.-]+)*$/.test(name) && !name.split('/').some((p) => p.startsWith('.')) ? name : 'index.html';
  let file = join(webDir, safe);
  if (!existsSync(file) || !statSync(file).isFile()) file = join(webDir, 'index.html');
  if (!existsSync(file)) return send(res, 404, { error: 'the dashboard is not built here (npm run build makes it); the API is under /api/v1/' });
  const body = readFileSync(file);
  res.writeHead(200, {
    'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': body.length,
    'cache-control': file.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer',
  });
  res.end(body);
}

/** GET /api/v1/events: server-sent events, one per thing that happened, until the page goes;
 *  a comment every 15 s keeps proxies from closing a quiet stream. */
function events(subscribe: NonNullable<HttpApiOptions['subscribe']>, req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  res.write(': nxt events\n\n');
  const stop = subscribe((event, data) => { res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`); });
  const keepAlive = setInterval(() => res.write(': still here\n\n'), 15_000);
  keepAlive.unref();
  const end = (): void => { clearInterval(keepAlive); stop(); };
  req.once('close', end);
  res.once('close', end);
}
