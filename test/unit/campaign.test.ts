/** The rollout campaign state machine, driven with a fixed clock. */
import { describe, expect, it } from 'vitest';
import { Campaign, inWindow, parseLimit, parseStages, parseWindow, stageSize, type CampaignSpec } from '../../src/server/campaign.js';

const at = (hhmm = '12:00'): Date => new Date(`2026-11-30T${hhmm}:00`);
const ids = Array.from({ length: 10 }, (_, i) => `d${i}`);
const spec = (over: Partial<CampaignSpec> = {}): CampaignSpec => ({
  release: { name: 'm', version: '7.1.0', sha256: 'a'.repeat(64) }, target: 'all',
  stages: parseStages('1,50%,100%'), successPercent: 60, maxFailures: parseLimit('--max-failures', '1'), ...over,
});
const online = (): boolean => true;

describe('rollout campaign', () => {
  it('reaches one device, then half, then all, each stage once enough committed', () => {
    const c = Campaign.create(1, spec(), ids, at());
    expect(c.due(at(), online)).toEqual(['d0']);
    c.mark('d0', 'sending', undefined, at());
    expect(c.due(at(), online)).toEqual([]);
    c.mark('d0', 'trial', undefined, at());
    expect(c.mark('d0', 'committed', undefined, at())).toEqual([{ kind: 'stage', stage: 1, devices: 5 }]);
    expect(c.due(at(), online)).toEqual(['d1', 'd2', 'd3', 'd4']);
    c.mark('d1', 'committed', undefined, at());
    expect(c.record.stage).toBe(1); // 2 of 5 < 60%
    expect(c.mark('d2', 'already', 'runs 7.1.0', at())).toEqual([{ kind: 'stage', stage: 2, devices: 10 }]);
    for (const id of ids.slice(3)) c.mark(id, 'committed', undefined, at());
    expect(c.state).toBe('done');
    expect(c.record.reason).toBe('9 committed, 1 already had it, 0 failed or rolled back');
  });

  it('pauses by itself past the failure limit, does not reach the next stage, and resumes accepting those failures', () => {
    const c = Campaign.create(1, spec(), ids, at());
    c.mark('d0', 'committed', undefined, at());
    c.mark('d1', 'failed', 'selfTestFailed', at());
    expect(c.state).toBe('running');
    const events = c.mark('d2', 'rolled-back', 'crashed', at());
    expect(events).toEqual([{ kind: 'paused', reason: '2 devices failed or rolled back, more than the limit of 1 for the 5 reached so far' }]);
    expect(c.due(at(), online)).toEqual([]);
    // Committing the rest of the stage while paused does not start the next one.
    c.mark('d3', 'committed', undefined, at());
    c.mark('d4', 'committed', undefined, at());
    expect(c.record.stage).toBe(1);
    expect(c.resume(at())).toEqual([{ kind: 'stage', stage: 2, devices: 10 }]);
    c.mark('d5', 'failed', 'x', at());
    expect(c.state).toBe('running'); // one new failure: within the limit
    c.mark('d6', 'failed', 'y', at());
    expect(c.state).toBe('paused');
  });

  it('a share limit counts against the devices reached so far', () => {
    const c = Campaign.create(1, spec({ stages: parseStages('10,100%'), maxFailures: parseLimit('--max-failures', '20%') }), ids, at());
    expect(c.failureLimit()).toBe(2);
    c.mark('d0', 'failed', undefined, at());
    c.mark('d1', 'failed', undefined, at());
    expect(c.state).toBe('running');
    c.mark('d2', 'failed', undefined, at());
    expect(c.state).toBe('paused');
  });

  it('offline devices wait, and are due when they come back; a push cut by a restart is due again', () => {
    const c = Campaign.create(1, spec({ stages: parseStages('100%') }), ['a', 'b'], at());
    expect(c.due(at(), (id) => id === 'a')).toEqual(['a']);
    c.mark('a', 'sending', undefined, at());
    c.restarted();
    expect(c.due(at(), online)).toEqual(['a', 'b']);
  });

  it('starts new pushes only inside its window (which may wrap past midnight)', () => {
    const c = Campaign.create(1, spec({ window: parseWindow('22:00-04:00') }), ids, at());
    expect(c.due(at('12:00'), online)).toEqual([]);
    expect(c.due(at('23:30'), online)).toEqual(['d0']);
    expect(c.due(at('03:59'), online)).toEqual(['d0']);
    expect(inWindow(parseWindow('08:00-17:00'), at('17:00'))).toBe(false);
  });

  it('cancel and pause are refused where they make no sense', () => {
    const c = Campaign.create(1, spec(), ids, at());
    c.cancel(at());
    expect(() => c.cancel(at())).toThrow(/cancelled/);
    expect(() => c.resume(at())).toThrow(/not paused/);
    expect(c.mark('d0', 'committed', undefined, at())).toEqual([]);
  });

  it('parses what the operator types, and says what is wrong', () => {
    expect(parseStages('1,10%,50%,100%')).toEqual([{ count: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }]);
    expect(() => parseStages('1,x')).toThrow(/neither a number/);
    expect(() => parseStages('0%')).toThrow(/more than 0%/);
    expect(parseLimit('--max-failures', '3')).toEqual({ count: 3 });
    expect(() => parseWindow('25:00-01:00')).toThrow(/hours 0-23/);
    expect(stageSize({ percent: 10 }, 7)).toBe(1);
    expect(stageSize({ count: 50 }, 7)).toBe(7);
  });
});
