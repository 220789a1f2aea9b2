/**
 * The benchmarks' command lines, each named once with its default and what it is for: `--help`
 * prints them, and an unknown option or a bad value stops the benchmark before anything starts
 * (one that ran every section on a typo would take many minutes, and one stopped mid-way leaves
 * its network namespaces to the next run to remove).
 */
import { parseArgs } from 'node:util';

export type OptionSpec = { readonly help: string } & (
  | { readonly number: number | undefined }
  | { readonly text: string | undefined }
  | { readonly flag: true }
  | { readonly numbers: readonly number[] }
  | { readonly words: readonly string[]; readonly among?: readonly string[] }
);

type Value<S> = S extends { number: infer N } ? N
  : S extends { flag: true } ? boolean
  : S extends { numbers: readonly number[] } ? number[]
  : S extends { words: readonly string[] } ? string[]
  : S extends { text: infer T } ? T
  : never;

export type BenchArgs<T extends Record<string, OptionSpec>> = { readonly [K in keyof T]: Value<T[K]> };

/** Parse `argv` (the process's by default) against `specs`; exits 0 after --help (which prints
 *  `about` too), 2 on bad usage. */
export function benchArgs<T extends Record<string, OptionSpec>>(command: string, about: string, specs: T, argv = process.argv.slice(2)): BenchArgs<T> {
  const usage = (): string => [`usage: ${command} [options]`, about, ...Object.entries(specs).map(([name, s]) => `  --${name}${describe(s)}  ${s.help}`)].join('\n');
  try {
    const { values, positionals } = parseArgs({
      args: argv, strict: true, allowPositionals: true,
      options: { help: { type: 'boolean' }, ...Object.fromEntries(Object.entries(specs).map(([name, s]) => [name, { type: 'flag' in s ? 'boolean' : 'string' } as const])) },
    });
    if (values.help) {
      console.log(usage());
      process.exit(0);
    }
    if (positionals.length > 0) throw new Error(`unexpected ${positionals.map((p) => `"${p}"`).join(', ')}`);
    const given = values as Record<string, string | boolean | undefined>;
    return Object.fromEntries(Object.entries(specs).map(([name, s]) => [name, valueOf(name, s, given[name])])) as BenchArgs<T>;
  } catch (err) {
    const e = err as Error & { code?: string };
    const why = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? `unknown option ${/'([^']+)'/.exec(e.message)?.[1] ?? ''}` : e.message;
    console.error(`${command.replace(/ --$/, '')}: ${why}\n${usage()}`);
    process.exit(2);
  }
}

function valueOf(name: string, s: OptionSpec, given: string | boolean | undefined): unknown {
  if ('flag' in s) return given === true;
  const text = typeof given === 'string' ? given : undefined;
  if ('text' in s) return text ?? s.text;
  if ('number' in s) return text === undefined ? s.number : number(name, text);
  if ('numbers' in s) return text === undefined ? [...s.numbers] : text.split(',').map((t) => number(name, t));
  const words = text === undefined ? [...s.words] : text.split(',');
  const unknown = s.among ? words.filter((w) => !s.among!.includes(w)) : [];
  if (unknown.length > 0) throw new Error(`--${name}: ${unknown.join(', ')} is not one of ${s.among!.join(', ')}`);
  return words;
}

function number(name: string, text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0) throw new Error(`--${name} "${text}" is not a number (0 or more)`);
  return n;
}

function describe(s: OptionSpec): string {
  if ('flag' in s) return '';
  if ('number' in s) return s.number === undefined ? ' N' : ` N (${s.number})`;
  if ('text' in s) return s.text === undefined ? ' TEXT' : ` TEXT (${s.text})`;
  if ('numbers' in s) return ` N,N… (${s.numbers.join(',')})`;
  return ` ${s.among ? s.among.join('|') : 'WORD'},… (${s.words.join(',')})`;
}
