/**
 * The line-oriented console both programs share. Commands run one at a time in the order they
 * were typed (or piped), except long ones marked `background` (a push): the prompt comes back at
 * once, and status, cancel and the rest can be typed while they run. Lines printed by background
 * events never garble what the operator is typing: on a terminal the prompt and the partial input
 * are redrawn below them.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';
import { Transform, type Readable, type Writable } from 'node:stream';
import type { Level, LogSink } from './log.js';
import { NxtError, errorMessage } from '../errors.js';
import { clip, usageWords, wrap } from './format.js';

export interface Command {
  readonly usage: string;
  readonly help: string;
  run(args: string[]): Promise<void> | void;
  /** At the console, not waited for: its output follows as it happens. (`ctl` waits for it, for
   *  its exit code.) */
  readonly background?: boolean | ((args: string[]) => boolean);
}

export interface ReplOptions {
  readonly prompt: string;
  readonly input: Readable;
  readonly output: Writable;
  readonly commands: Record<string, Command>;
  /** Called when input ends (EOF); the program decides whether to keep running headless. */
  readonly onEnd?: () => void;
  /** Ctrl-C at a terminal console (readline takes it from the process: without this it would
   *  only pause the input). */
  readonly onInterrupt?: () => void;
  /** Words Tab may complete after a command (client ids, groups…), given the command's name. */
  readonly completeArgs?: (command: string) => string[];
  /** Where typed lines are kept across sessions (on a terminal only). */
  readonly historyFile?: string;
  /** No console at all (a service: standard input is /dev/null, or --headless): every printed
   *  line goes here as a log record, and no prompt is ever written. */
  readonly headless?: LogSink;
}

/** The longest line read from a console that is not a terminal; the rest of a longer one is
 *  dropped (an endless line, e.g. from /dev/zero, must not exhaust memory). */
const MAX_INPUT_LINE = 64 * 1024;

const HISTORY_LINES = 500;

export class Repl {
  private readonly rl: Interface | undefined;
  private readonly queue: string[] = [];
  private busy = false;
  private ended = false;
  /** Background commands still running: input that ends waits for them. */
  private readonly running = new Set<Promise<unknown>>();
  private readonly terminal: boolean;
  /** Status lines shown above the prompt (a terminal). */
  private status: string[] = [];
  private statusCalls = 0;

  constructor(private readonly options: ReplOptions) {
    this.terminal = (options.output as { isTTY?: boolean }).isTTY === true && (options.input as { isTTY?: boolean }).isTTY === true;
    if (options.headless) {
      this.rl = undefined;
      this.ended = true;
      return;
    }
    this.rl = createInterface({
      input: this.terminal ? options.input : options.input.pipe(boundedLines(MAX_INPUT_LINE)), output: options.output, prompt: options.prompt, terminal: this.terminal,
      completer: (line: string) => this.complete(line), history: this.loadHistory(), historySize: HISTORY_LINES,
    });
    const file = options.historyFile;
    if (this.terminal && file !== undefined) {
      this.rl.on('history', (lines: string[]) => {
        try { writeFileSync(file, `${[...lines].reverse().join('\n')}\n`, { mode: 0o600 }); } catch { /* history is a convenience */ }
      });
    }
    this.rl.on('SIGINT', () => { if (options.onInterrupt) options.onInterrupt(); else process.kill(process.pid, 'SIGINT'); });
    this.rl.on('line', (line) => { this.queue.push(line); void this.drain(); });
    this.rl.on('close', () => { this.ended = true; this.endIfIdle(); });
  }

  start(): void {
    this.rl?.prompt();
  }

  /** Print a line from a background event without breaking the prompt. */
  print(text: string, level: Level = 'info'): void {
    if (this.options.headless) {
      this.options.headless.write(level, text);
    } else if (this.terminal && !this.busy) {
      this.options.output.write(`${this.eraseStatus()}\r\x1b[K${text}\n${this.statusText()}`);
      this.rl?.prompt(true);
    } else {
      // One stream for a console, even on a pipe: it is one conversation, read in order (a
      // headless run's log puts warnings on stderr; ctl separates its own).
      this.options.output.write(`${text}\n`);
    }
  }

  /**
   * Lines that stand for a state rather than an event (a push's progress): on a terminal they are
   * redrawn in place above the prompt (an empty list takes them away); elsewhere they are printed
   * as lines, every `everyOther`-th call when headless (a log wants fewer).
   */
  showStatus(lines: readonly string[], everyOther = 10): void {
    if (this.terminal && !this.options.headless) {
      if (this.busy) return; // a command is printing: its output first
      this.options.output.write(`${this.eraseStatus()}\r\x1b[K`);
      this.status = [...lines];
      this.options.output.write(this.statusText());
      this.rl?.prompt(true);
      return;
    }
    if (this.options.headless && this.statusCalls++ % everyOther !== 0) return;
    for (const l of lines) this.print(l);
  }

  close(): void {
    this.rl?.close();
  }

  /** Cursor up over the status lines and clear from there (the prompt line is below them). */
  private eraseStatus(): string {
    return this.status.length === 0 ? '' : `\x1b[${this.status.length}A\r\x1b[J`;
  }

  private statusText(): string {
    return this.status.map((l) => `${l}\n`).join('');
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    while (this.queue.length > 0) {
      const line = this.queue.shift() ?? '';
      // A command's output goes below the status lines, which stay behind as they were: the
      // next status is drawn afresh under it (erasing would take the command's lines instead).
      this.status = [];
      await this.execute(line);
    }
    this.busy = false;
    if (this.ended) this.endIfIdle();
    else this.rl?.prompt();
  }

  private endIfIdle(): void {
    if (!this.busy && this.queue.length === 0 && this.running.size === 0) this.options.onEnd?.();
  }

  private async execute(line: string): Promise<void> {
    const write = (text: string): void => this.print(text.replace(/\n$/, ''));
    const writeError = (text: string): void => this.print(text.replace(/\n$/, ''), 'error');
    if (line.endsWith(TOO_LONG_MARK)) {
      this.print(`error: a line of more than ${MAX_INPUT_LINE} characters: ignored`, 'error');
      return;
    }
    const [name = '', ...args] = line.trim().split(/\s+/);
    const background = Object.hasOwn(this.options.commands, name) ? this.options.commands[name]!.background : undefined;
    if (background === true || (typeof background === 'function' && background(args))) {
      const run = runCommandLine(this.options.commands, line, write, writeError);
      this.running.add(run);
      void run.finally(() => { this.running.delete(run); if (this.ended) this.endIfIdle(); });
      return;
    }
    await runCommandLine(this.options.commands, line, (text) => this.options.output.write(text), writeError);
  }

  /** Newest first, as readline wants it. */
  private loadHistory(): string[] {
    const file = this.options.historyFile;
    if (!this.terminal || file === undefined || !existsSync(file)) return [];
    try {
      return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(-HISTORY_LINES).reverse();
    } catch {
      return [];
    }
  }

  /** Tab: command names at the start of a line, then what completeArgs offers for that command. */
  private complete(line: string): [string[], string] {
    const words = line.split(/\s+/);
    if (words.length <= 1) {
      const names = Object.keys(this.options.commands);
      const hits = names.filter((n) => n.startsWith(line.trim()));
      return [hits.length > 0 ? hits : names, line];
    }
    const partial = words.at(-1) ?? '';
    const offers = this.options.completeArgs?.(words[0] ?? '') ?? [];
    return [offers.filter((o) => o.startsWith(partial)), partial];
  }
}

/** Columns help text is wrapped to when the console's own width is not known (`ctl`, a pipe). */
export const HELP_WIDTH = 80;

/** The columns of `output` when it is a terminal (asked each time: it may be resized), else 80. */
export function terminalColumns(output: Writable): () => number {
  return () => {
    const { isTTY, columns } = output as { isTTY?: boolean; columns?: number };
    return isTTY === true && typeof columns === 'number' && columns >= 40 ? columns : HELP_WIDTH;
  };
}

/** `help` (every command) or `help <command>` (one), as a command both consoles share.
 *  `width`: the console's columns, asked at each call (a terminal may be resized). */
export function helpCommand(commands: () => Record<string, Command>, say: (line: string) => void, width: () => number = () => HELP_WIDTH): Command {
  return {
    usage: 'help [command]',
    help: 'list the commands, or explain one',
    run: (args) => {
      const all = commands();
      const one = args[0] === undefined ? undefined : all[args[0]];
      if (args[0] !== undefined && !one) throw new NxtError('usage', `no command "${args[0]}": type "help" for the list`);
      say(one ? commandHelp(one, width()) : helpText(all, width()));
    },
  };
}

/** Every command by name, with as much of what it does as fits a line: an overview that reads
 *  at 80 columns (the whole text of each, with its usage, is `help <command>`). */
export function helpText(commands: Record<string, Command>, width = HELP_WIDTH): string {
  const names = Object.keys(commands);
  const column = Math.max(...names.map((n) => n.length));
  const summary = (c: Command): string => clip(c.help.split('\n')[0]!.replace(/:$/, ''), width - column - 4);
  return [
    'commands ("help <command>" for its arguments and all it does):',
    ...names.map((n) => `  ${n.padEnd(column)}  ${summary(commands[n]!)}`),
  ].join('\n');
}

/** One command: its usage, then what it does, wrapped to `width`. A help text's later lines are
 *  its forms one by one (`job logs …`, `job backup …`), each set in under the first. */
export function commandHelp(command: Command, width = HELP_WIDTH): string {
  const [first = '', ...forms] = command.help.split('\n');
  return [
    ...wrap(usageWords(command.usage), width, '    ', ''),
    ...wrap(first, width, '  '),
    ...forms.flatMap((f) => wrap(usageWords(f), width, '      ', '    ')),
  ].join('\n');
}

/**
 * Run one command line against `commands`, writing any error as one line (to `writeError`, or
 * with the rest). Resolves false when the line failed (unknown command, bad usage, or the command
 * threw), for callers with exit codes.
 */
export async function runCommandLine(commands: Record<string, Command>, line: string, write: (text: string) => void, writeError = write): Promise<boolean> {
  let words: string[];
  try {
    words = splitWords(line);
  } catch (err) {
    writeError(`error: ${errorMessage(err)}\n`);
    return false;
  }
  return (await runCommandWords(commands, words, writeError)) === 0;
}

/**
 * Run one command given as words (ctl sends them so: no quoting to undo). Resolves with an exit
 * status: 0 done, 1 failed, 2 asked wrongly (an unknown command, bad usage).
 */
export async function runCommandWords(commands: Record<string, Command>, words: readonly string[], writeError: (text: string) => void): Promise<0 | 1 | 2> {
  const [name, ...args] = words;
  if (name === undefined) return 0;
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    writeError(`unknown command "${name}": type "help" for the list\n`);
    return 2;
  }
  try {
    await command.run(args);
    return 0;
  } catch (err) {
    const code = err instanceof NxtError ? ` [${err.code}]` : '';
    writeError(`error${code}: ${errorMessage(err)}\n`);
    return err instanceof NxtError && err.code === 'usage' ? 2 : 1;
  }
}

/** Split a command line into words; "double" or 'single' quotes keep spaces in a word. */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) words.push(m[1] ?? m[2] ?? m[3] ?? '');
  const quotes = (line.match(/"/g)?.length ?? 0) % 2 + (line.match(/'/g)?.length ?? 0) % 2;
  if (quotes !== 0) throw new NxtError('usage', 'unbalanced quote');
  return words;
}

/** Pull every `--name value` of one repeatable option out of args (`--for a=1 --for b=2`). */
export function takeRepeated(args: readonly string[], name: string): { rest: string[]; values: string[] } {
  const rest: string[] = [];
  const values: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] !== `--${name}`) { rest.push(args[i]!); continue; }
    const value = args[++i];
    if (value === undefined) throw new NxtError('usage', `--${name} needs a value`);
    values.push(value);
  }
  return { rest, values };
}

/** Pull `--name value` options out of args; returns the rest as positional words. */
export function takeOptions(args: string[], known: string[]): { positional: string[]; options: Record<string, string> } {
  const positional: string[] = [];
  const options: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a.startsWith('--')) {
      const name = a.slice(2);
      if (!known.includes(name)) throw new NxtError('usage', `unknown option ${a}`);
      const value = args[i + 1];
      if (value === undefined) throw new NxtError('usage', `${a} needs a value`);
      options[name] = value;
      i++;
    } else {
      positional.push(a);
    }
  }
  return { positional, options };
}

/** Pass text through, cutting every line at `max` characters (the rest of it is dropped, and the
 *  line is marked so the console can say so). */
export function boundedLines(max: number): Transform {
  let length = 0;
  let cut = false;
  return new Transform({
    transform(chunk: Buffer | string, _encoding, done) {
      const text = chunk.toString();
      let out = '';
      let from = 0;
      for (let nl = text.indexOf('\n', from); ; nl = text.indexOf('\n', from)) {
        const end = nl < 0 ? text.length : nl;
        const piece = text.slice(from, end);
        const room = Math.max(0, max - length);
        if (!cut) {
          out += piece.slice(0, room);
          length += Math.min(piece.length, room);
          if (piece.length > room) { cut = true; out += TOO_LONG_MARK; }
        }
        if (nl < 0) break;
        out += '\n';
        length = 0;
        cut = false;
        from = nl + 1;
      }
      done(null, out);
    },
  });
}

/** Ends a line that was cut: the console refuses it rather than run half a command. */
export const TOO_LONG_MARK = '\u0000(line too long)';
