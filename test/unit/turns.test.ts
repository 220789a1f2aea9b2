import { describe, expect, it } from 'vitest';
import { Turns } from '../../src/util/turns.js';

describe('steps taken in turns', () => {
  it('run in the order asked, and the event loop turns after every `every` of them', async () => {
    const seen: string[] = [];
    const turns = new Turns(2);
    setImmediate(() => seen.push('loop'));
    const done = [1, 2, 3, 4, 5].map((n) => turns.run(() => { seen.push(`step ${n}`); return n * 10; }));
    expect(await Promise.all(done)).toEqual([10, 20, 30, 40, 50]);
    expect(seen).toEqual(['step 1', 'step 2', 'loop', 'step 3', 'step 4', 'step 5']);
  });

  it('hand a step\'s error to its caller only; the next steps still run', async () => {
    const turns = new Turns(4);
    const failing = turns.run(() => { throw new Error('no key'); });
    const next = turns.run(() => 'signed');
    await expect(failing).rejects.toThrow('no key');
    expect(await next).toBe('signed');
  });
});
