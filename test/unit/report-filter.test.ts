/** clients --where: conditions on the fields of a device's latest status report. */
import { describe, expect, it } from 'vitest';
import { matchesWhere, parseWhere } from '../../src/server/report-filter.js';

const report = { disk: { dataFreeBytes: 800 * 1024 ** 2 }, module: { release: '2.0.0' }, updateState: 0, agent: { type: 'gateway' } };

describe('report conditions', () => {
  it('compare numbers with units, and text', () => {
    expect(parseWhere('disk.dataFreeBytes<1GiB')).toEqual([{ path: ['disk', 'dataFreeBytes'], op: '<', value: 1024 ** 3 }]);
    expect(matchesWhere(report, parseWhere('disk.dataFreeBytes<1GiB'))).toBe(true);
    expect(matchesWhere(report, parseWhere('disk.dataFreeBytes>=1G'))).toBe(false);
    expect(matchesWhere(report, parseWhere('module.release=2.0.0, agent.type!=kiosk'))).toBe(true);
    expect(matchesWhere(report, parseWhere('updateState=0'))).toBe(true);
    expect(matchesWhere(report, parseWhere('module.release!=2.0.0'))).toBe(false);
  });

  it('a device without a report, or without the field, does not match', () => {
    expect(matchesWhere(undefined, parseWhere('updateState=0'))).toBe(false);
    expect(matchesWhere(report, parseWhere('disk.logsFreeBytes>0'))).toBe(false);
    expect(matchesWhere(report, parseWhere('module.release<5'))).toBe(false); // text is not a number
  });

  it('says what a condition looks like', () => {
    expect(() => parseWhere('free space')).toThrow(/expected FIELD<VALUE/);
  });
});
