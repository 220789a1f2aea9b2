import { describe, expect, it } from 'vitest';
import { QuietLines } from '../../src/server/quiet-lines.js';

describe('a device\'s comings and goings on the console', () => {
  it('shows the first line at once, holds the rest for the quiet period, then the last with a count', () => {
    const q = new QuietLines(10_000);
    expect(q.offer('a', 'a gone', 0)).toBe('a gone');
    expect(q.offer('a', 'a back', 100)).toBeUndefined();
    expect(q.offer('a', 'a gone', 200)).toBeUndefined();
    expect(q.offer('b', 'b back', 300)).toBe('b back'); // each device its own
    expect(q.due(9_999)).toEqual([]);
    expect(q.due(10_000)).toEqual(['a gone (3 changes in 10 s)']);
    expect(q.size).toBe(1); // b's period runs until 10,300, with nothing held
    expect(q.due(10_300)).toEqual([]);
    expect(q.size).toBe(0);
    expect(q.offer('a', 'a back', 10_400)).toBe('a back');
  });

  it('shows a line at once again once the period is over, held ones or not', () => {
    const q = new QuietLines(1_000);
    expect(q.offer('a', 'one', 0)).toBe('one');
    expect(q.offer('a', 'two', 500)).toBeUndefined();
    // due() not called in time: the next line after the period is shown, the held one goes with it
    expect(q.offer('a', 'three', 1_500)).toBe('three');
    expect(q.due(2_500)).toEqual([]);
  });
});
