import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { peerText } from '../../src/util/peer-text.js';
import { parseInventory } from '../../src/server/devices.js';

describe('text from a peer, made safe to show', () => {
  it('leaves ordinary text as it is, accents, emoji and all', () => {
    for (const s of ['', 'gw-7', 'version 1.0.0 is not newer — ✓', '日本語 🙂', 'tab-free JSON {"a":[1,2]}']) expect(peerText(s)).toBe(s);
  });

  it('turns tab, CR and LF into spaces, every other control and bidirectional override into U+FFFD', () => {
    expect(peerText('a\tb\r\nc')).toBe('a b  c');
    expect(peerText('\x1b[2J\x00\x7f\x9b\u202e\u2066x')).toBe('\ufffd[2J\ufffd\ufffd\ufffd\ufffd\ufffdx');
  });

  it('leaves no control behind, keeps the length, and keeps valid JSON valid', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
      const safe = peerText(s);
      expect(safe).toHaveLength(s.length);
      expect(safe).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
      expect(peerText(safe)).toBe(safe);
    }), { numRuns: 2000 });
    fc.assert(fc.property(fc.jsonValue(), (value) => {
      const pretty = JSON.stringify(value, null, '\t');
      expect(() => JSON.parse(peerText(pretty))).not.toThrow();
    }), { numRuns: 500 });
  });

  it('cleans what JSON escapes put in a device\'s inventory', () => {
    const inv = parseInventory(JSON.stringify({ hostname: 'gw\u001b[31m-7\nfake line', os: 'Linux\u202e', cpus: 4 }));
    expect(inv).toEqual({ hostname: 'gw\ufffd[31m-7 fake line', os: 'Linux\ufffd', cpus: 4 });
  });
});
