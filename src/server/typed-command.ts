/**
 * A command written once for every front end. Its input is typed: the console and `ctl` make it
 * from words (`parse`), the HTTP API from a JSON body checked against the command's JSON Schema.
 * Its output is typed: the console and `ctl` print it as text (`print`), `--json` and the API
 * return it as it is. Nothing here knows about sockets or terminals.
 */
import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve, sep } from 'node:path';
import type { Ajv as AjvClass, ErrorObject, ValidateFunction } from 'ajv';
import { NxtError } from '../errors.js';
import type { Command } from '../util/repl.js';

/** What a front end gives a command while it runs. */
export interface RunContext {
  /** Lines said while it runs (what it skipped, what it starts): shown as they come at the
   *  console and ctl; the API leaves them out (GET /api/v1/events carries what happens). */
  say(line: string): void;
  /** Relative paths start here (ctl: the caller's directory); default: the server's. */
  readonly cwd?: string;
  /** Where progress goes (the console redraws it in place); absent: none is shown. */
  readonly progress?: (lines: string[]) => void;
  /** Progress as a bar per device (a terminal). */
  readonly bars?: boolean;
  /** The front end shows each device's result as it lands (the console's events): not again. */
  readonly live?: boolean;
  /** Files the caller names must be under this folder (the HTTP API: what was uploaded to it). */
  readonly filesUnder?: string;
}

/**
 * A file the caller named (a module to push, a file a job sends), as a path here: relative to the
 * caller's directory. Through the HTTP API only a file uploaded to it: an API token is not a way
 * to have the server send its other files (keys, configuration) to a device.
 */
export function callerFile(rc: RunContext, name: string): string {
  const path = resolve(rc.cwd ?? process.cwd(), name);
  if (rc.filesUnder === undefined) return path;
  const real = (p: string): string => { try { return realpathSync(p); } catch { return resolve(p); } };
  const file = real(path);
  if (!file.startsWith(real(rc.filesUnder) + sep)) {
    throw new NxtError('usage', `"${name}" is not a file uploaded through the API (POST /api/v1/releases?name=NAME): the API sends only those`);
  }
  return file;
}

export interface TypedCommand<I, O> {
  readonly usage: string;
  readonly help: string;
  /** JSON Schema of the input (an object): what the API's request body must be. */
  readonly input: object;
  /** The console's words (without --json) as input; throws NxtError('usage', …). */
  parse(words: string[]): I;
  run(input: I, context: RunContext): Promise<O> | O;
  /** The output as the console's lines. */
  print(output: O, context: RunContext): string[];
  /** What `--json` prints at the console and ctl, when not the output itself (a form scripts
   *  relied on before the command was typed). */
  json?(output: O): unknown;
  /** An output that is a failure although the command ran (a push that failed on a device): ctl
   *  exits 1 and the API answers 422, both with the output. */
  failure?(output: O): NxtError | undefined;
  /** At the console, not waited for: its output follows as it happens (or, given the words,
   *  whether this use of it is). */
  readonly background?: boolean | ((words: string[]) => boolean);
  /** Its output goes to ctl's --json envelope as data (what scripts read of a push). */
  readonly reportsData?: boolean;
}

/** What the console or ctl gives its commands (server-repl.ts CommandContext). */
export interface ConsoleContext {
  readonly cwd?: string;
  readonly data?: (value: unknown) => void;
  readonly bars?: boolean;
  readonly progress?: (lines: string[]) => void;
  /** No live events to show each device's result (ctl): the command lists them at the end. */
  readonly reportEachClient?: boolean;
  /** RunContext.filesUnder (the HTTP API's words). */
  readonly filesUnder?: string;
}

/** A typed command of any input and output (what the front ends hold in their tables). */
export type AnyTypedCommand = TypedCommand<any, unknown>;

/** The console's (and ctl's) form of a typed command: words in, lines out, or one JSON line with --json. */
export function consoleCommand(c: AnyTypedCommand, say: (line: string) => void, context: ConsoleContext = {}): Command {
  return {
    usage: c.usage,
    help: c.help,
    ...(c.background ? { background: c.background } : {}),
    run: async (args) => {
      const json = args.includes('--json');
      const run: RunContext = {
        say, cwd: context.cwd, live: context.reportEachClient !== true, bars: context.bars, filesUnder: context.filesUnder,
        progress: context.progress ?? ((lines) => { for (const l of lines) say(l); }),
      };
      const output = await c.run(c.parse(args.filter((a) => a !== '--json')), run);
      if (json) say(JSON.stringify(c.json ? c.json(output) : output));
      else for (const line of c.print(output, run)) say(line);
      if (c.reportsData) context.data?.(c.json ? c.json(output) : output);
      // A script must not read "done" where it was not (the console has said what happened).
      const failure = c.failure?.(output);
      if (failure && context.data) throw failure;
    },
  };
}

let ajv: AjvClass | undefined;
const validators = new WeakMap<object, ValidateFunction>();

/** The API's form: a JSON body, checked against the command's schema, then run (`cwd`: where
 *  relative paths start; `filesUnder`: RunContext's). */
export async function runWithJson(c: AnyTypedCommand, body: unknown, cwd?: string, filesUnder?: string): Promise<unknown> {
  let validate = validators.get(c.input);
  if (!validate) {
    // Loaded when the API first runs a command: a console that never does need not pay for it.
    ajv ??= new (createRequire(import.meta.url)('ajv') as { Ajv: typeof AjvClass }).Ajv({ allErrors: true, strict: true, useDefaults: true });
    validate = ajv.compile(c.input);
    validators.set(c.input, validate);
  }
  if (!validate(body)) throw new NxtError('usage', `the body does not fit ${c.usage}: ${(validate.errors ?? []).map(describe).join('; ')}`);
  return c.run(body, { say: () => undefined, cwd, live: false, filesUnder });
}

function describe(e: ErrorObject): string {
  const at = e.instancePath === '' ? 'the body' : `"${e.instancePath.slice(1).replaceAll('/', '.')}"`;
  if (e.keyword === 'additionalProperties') return `unknown field "${(e.params as { additionalProperty: string }).additionalProperty}"`;
  if (e.keyword === 'required') return `"${(e.params as { missingProperty: string }).missingProperty}" is missing`;
  return `${at} ${e.message ?? 'is not valid'}`;
}

/** JSON Schema helpers for inputs: an object of these properties, no others. */
export const schema = {
  object: (properties: Record<string, object>, required: string[] = []): object => ({ type: 'object', properties, required, additionalProperties: false }),
  string: (extra: object = {}): object => ({ type: 'string', ...extra }),
  strings: (): object => ({ type: 'array', items: { type: 'string' }, default: [] }),
  positive: (): object => ({ type: 'integer', minimum: 1 }),
};
