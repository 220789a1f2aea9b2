/** A command written once: words or JSON in, typed output printed as text or returned as JSON. */
import { describe, expect, it } from 'vitest';
import { NxtError } from '../../src/errors.js';
import { consoleCommand, runWithJson, schema, type TypedCommand } from '../../src/server/typed-command.js';

const add: TypedCommand<{ a: number; b: number; label: string[] }, { sum: number; label: string }> = {
  usage: 'add <A> <B> [--label X …]',
  help: 'adds',
  input: schema.object({ a: { type: 'integer' }, b: { type: 'integer' }, label: schema.strings() }, ['a', 'b']),
  parse: (words) => {
    const [a, b, ...label] = words;
    if (a === undefined || b === undefined || !/^\d+$/.test(a) || !/^\d+$/.test(b)) throw new NxtError('usage', 'usage: add <A> <B>');
    return { a: Number(a), b: Number(b), label };
  },
  run: ({ a, b, label }) => {
    if (a + b > 100) throw new NxtError('too-big', 'more than 100');
    return { sum: a + b, label: label.join(' ') };
  },
  print: (o) => [`${o.label}${o.label ? ': ' : ''}${o.sum}`],
};

describe('a typed command', () => {
  it('at the console: words in, text out, or its output as one JSON line with --json', async () => {
    const lines: string[] = [];
    const c = consoleCommand(add, (l) => lines.push(l));
    await c.run(['2', '3']);
    await c.run(['2', '3', 'x', '--json']);
    expect(lines).toEqual(['5', '{"sum":5,"label":"x"}']);
    await expect(c.run(['two', '3'])).rejects.toMatchObject({ code: 'usage' });
  });

  it('--json prints the command\'s own JSON form when it has one', async () => {
    const lines: string[] = [];
    await consoleCommand({ ...add, json: (o: { sum: number }) => o.sum }, (l) => lines.push(l)).run(['1', '1', '--json']);
    expect(lines).toEqual(['2']);
  });

  it('from the API: JSON in, checked against its schema (defaults filled), output as it is', async () => {
    expect(await runWithJson(add, { a: 1, b: 2 })).toEqual({ sum: 3, label: '' });
    await expect(runWithJson(add, { a: 1 })).rejects.toThrow(/"b" is missing/);
    await expect(runWithJson(add, { a: 1, b: 'x' })).rejects.toThrow(/"b" must be integer/);
    await expect(runWithJson(add, { a: 1, b: 2, c: 3 })).rejects.toThrow(/unknown field "c"/);
    await expect(runWithJson(add, [1, 2])).rejects.toMatchObject({ code: 'usage' });
    // A refusal from the command itself keeps its code.
    await expect(runWithJson(add, { a: 99, b: 2 })).rejects.toMatchObject({ code: 'too-big' });
  });
});
