import { describe, expect, it } from 'vitest';
import { DatagramBatch } from '../../src/net/datagram-batch.js';

describe('datagrams taken by the batch', () => {
  it('is due once its oldest has waited the most it may, and full at its limit; taken in order', () => {
    const batch = new DatagramBatch<string>(3, 50);
    expect(batch.dueAt).toBeUndefined();
    expect(batch.push('a', 1000)).toBe(false);
    expect(batch.push('b', 1030)).toBe(false);
    // The oldest decides: not pushed back by later arrivals.
    expect(batch.dueAt).toBe(1050);
    expect(batch.push('c', 1040)).toBe(true);
    expect(batch.size).toBe(3);
    expect(batch.take()).toEqual(['a', 'b', 'c']);
    expect(batch.size).toBe(0);
    expect(batch.dueAt).toBeUndefined();
    // The next batch counts from its own first datagram.
    batch.push('d', 2000);
    expect(batch.dueAt).toBe(2050);
    expect(batch.take()).toEqual(['d']);
  });
});
