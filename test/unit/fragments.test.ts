import { describe, expect, it } from 'vitest';
import { FRAGMENTED_DATAGRAM, FragmentPolicy } from '../../src/net/fragments.js';
import { AGENT_FEATURES, hasFeature } from '../../src/protocol/messages.js';
import { parseInventory } from '../../src/server/devices.js';

const options = { holdMs: 600_000, maxResentShare: 0.2, minChunks: 256, maxDevices: 3 };
const fragmented = { fragmented: true, chunks: 2048, acked: 2048, resent: 30, timedOut: false };
const whole = { ...fragmented, fragmented: false };
const HOLD = options.holdMs;

describe('which devices get datagrams that IP fragments', () => {
  it('allows them until a push shows they cost too much', () => {
    const p = new FragmentPolicy(options);
    expect(p.allowed('a', 0)).toBe(true);
    expect(p.pushEnded('a', fragmented, 10)).toBeUndefined();
    // A fifth resent is still allowed; more is not.
    expect(p.pushEnded('a', { ...fragmented, resent: 409 }, 20)).toBeUndefined();
    expect(p.allowed('a', 30)).toBe(true);
    expect(p.pushEnded('a', { ...fragmented, resent: 411 }, 40)).toMatchObject({ change: 'lossy' });
    expect(p.allowed('a', 41)).toBe(false);
    expect(p.allowed('b', 41)).toBe(true);
    expect(p.allowed('a', 40 + HOLD)).toBe(true);
  });

  it('a small push says too little about loss to decide', () => {
    const p = new FragmentPolicy(options);
    expect(p.pushEnded('a', { ...fragmented, chunks: 100, acked: 100, resent: 60 }, 0)).toBeUndefined();
    expect(p.allowed('a', 1)).toBe(true);
  });

  it('takes them away when nothing got through, and gives them back after the hold', () => {
    const p = new FragmentPolicy(options);
    expect(p.pushEnded('a', { fragmented: true, chunks: 128, acked: 0, resent: 128, timedOut: true }, 1000)).toMatchObject({ change: 'blocked' });
    expect(p.allowed('a', 1000 + HOLD - 1)).toBe(false);
    expect(p.allowed('a', 1000 + HOLD)).toBe(true);
    expect(p.pushEnded('a', fragmented, 700_000)).toBeUndefined();
    expect(p.allowed('a', 700_001)).toBe(true);
  });

  it('fragments that never arrived leave pieces allowed; pieces that never arrived, or loss, take both', () => {
    const p = new FragmentPolicy(options);
    const blocked = { fragmented: true, chunks: 128, acked: 0, resent: 128, timedOut: true };
    expect(p.pushEnded('a', blocked, 0)).toMatchObject({ change: 'blocked' });
    expect(p.allowed('a', 1)).toBe(false);
    expect(p.allowed('a', 1, true)).toBe(true);
    expect(p.pushEnded('a', { ...blocked, pieces: true }, 2)).toMatchObject({ change: 'blocked' });
    expect(p.allowed('a', 3, true)).toBe(false);
    expect(p.allowed('a', 2 + HOLD, true)).toBe(true);
    expect(p.pushEnded('b', { ...fragmented, resent: 411, pieces: true }, 0)).toMatchObject({ change: 'lossy' });
    expect(p.allowed('b', 1)).toBe(false);
    expect(p.allowed('b', 1, true)).toBe(false);
  });

  it('a push that timed out after some chunks arrived is judged by its resends, not as blocked', () => {
    const p = new FragmentPolicy(options);
    expect(p.pushEnded('a', { ...fragmented, acked: 900, resent: 10, timedOut: true }, 0)).toBeUndefined();
    expect(p.allowed('a', 1)).toBe(true);
  });

  it('a link that loses frames: whole datagrams lose far less, so they stay', () => {
    const p = new FragmentPolicy(options);
    // 5% of frames lost: about 26% of six-fragment datagrams, 5% of whole ones.
    expect(p.pushEnded('a', { ...fragmented, resent: 540 }, 0)).toMatchObject({ change: 'lossy' });
    expect(p.pushEnded('a', { ...whole, chunks: 12_000, acked: 12_000, resent: 600 }, 10)).toBeUndefined();
    expect(p.allowed('a', 20)).toBe(false);
    // Judged once: a later whole push changes nothing either way.
    expect(p.pushEnded('a', { ...whole, chunks: 12_000, acked: 12_000, resent: 6000 }, 30)).toBeUndefined();
    expect(p.allowed('a', 40)).toBe(false);
  });

  it('a link that loses datagrams: whole ones lose as much, so fragments come back and loss alone does not take them again', () => {
    const p = new FragmentPolicy(options);
    expect(p.pushEnded('a', { ...fragmented, resent: 520 }, 0)).toMatchObject({ change: 'lossy', share: 520 / 2048 });
    expect(p.allowed('a', 1)).toBe(false);
    const back = p.pushEnded('a', { ...whole, chunks: 12_000, acked: 12_000, resent: 3000 }, 10);
    expect(back).toMatchObject({ change: 'link-loss', share: 0.25, fragmentedShare: 520 / 2048 });
    expect(p.allowed('a', 11)).toBe(true);
    // Loss alone now takes nothing away (and a push does not give up on fragments mid-way).
    expect([p.tolerates('a', 11), p.tolerates('b', 11)]).toEqual([true, false]);
    expect(p.pushEnded('a', { ...fragmented, resent: 520 }, 20)).toBeUndefined();
    expect(p.allowed('a', 21)).toBe(true);
    // Fragments that stop arriving altogether still count.
    expect(p.pushEnded('a', { ...fragmented, acked: 0, timedOut: true }, 30)).toMatchObject({ change: 'blocked' });
    expect(p.allowed('a', 31)).toBe(false);
    // After the hold, loss is judged again.
    expect(p.pushEnded('a', { ...fragmented, resent: 520 }, 30 + HOLD + 10)).toMatchObject({ change: 'lossy' });
  });

  it('remembers a bounded number of devices, dropping the oldest', () => {
    const p = new FragmentPolicy(options);
    const blocked = { fragmented: true, chunks: 1, acked: 0, resent: 1, timedOut: true };
    for (const d of ['a', 'b', 'c', 'd']) p.pushEnded(d, blocked, 0);
    expect(p.allowed('a', 1)).toBe(true);
    expect(['b', 'c', 'd'].map((d) => p.allowed(d, 1))).toEqual([false, false, false]);
  });
});

describe('the datagram of one large chunk', () => {
  it('fills six fragments on a 1500-byte link, in IPv4 and in IPv6', () => {
    const behindIp = FRAGMENTED_DATAGRAM + 8; // the UDP header
    // Fragment payloads: IPv4 1480 (1500 less 20); IPv6 1448 (1500 less 40 and 8, down to 8s).
    for (const perFragment of [1480, 1448]) expect(Math.ceil(behindIp / perFragment)).toBe(6);
    // Full: the sixth IPv6 fragment has no room for another 8 bytes.
    expect(6 * 1448 - behindIp).toBeLessThan(8);
  });
});

describe('which devices may be sent pieces (or wide chunks) at all', () => {
  it('those whose inventory lists the feature; an agent from before it says nothing', () => {
    expect(hasFeature(parseInventory(JSON.stringify({ agent: '0.1.0', features: AGENT_FEATURES })).features, 'pieces')).toBe(true);
    expect(hasFeature(parseInventory(JSON.stringify({ agent: '0.1.0', features: AGENT_FEATURES })).features, 'wide')).toBe(true);
    expect(hasFeature(parseInventory(JSON.stringify({ agent: '0.1.0', features: 'pieces' })).features, 'wide')).toBe(false);
    expect(hasFeature(parseInventory(JSON.stringify({ agent: '0.1.0', features: 'pieces later' })).features, 'pieces')).toBe(true);
    expect(hasFeature(parseInventory(JSON.stringify({ agent: '0.1.0' })).features, 'pieces')).toBe(false);
    expect(hasFeature(parseInventory(JSON.stringify({ features: 'piecesx' })).features, 'pieces')).toBe(false);
    expect(hasFeature(parseInventory(JSON.stringify({ features: ['pieces'] })).features, 'pieces')).toBe(false);
  });
});
