import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DecodeError } from '../../src/errors.js';
import {
  decode, encode, Enrollment, MAX_CHUNK_BYTES, UpdateResult, UpdateState, MAX_MANIFEST_BYTES, MAX_SACK_BITMAP_BYTES, type Message,
} from '../../src/protocol/messages.js';

const id = new Uint8Array(16).fill(7);
const v = { major: 2, minor: 0, patch: 1 };

const examples: Message[] = [
  {
    type: 'register', clientId: id, seq: 5, version: v, product: { major: 8, minor: 6, productName: 'nxtgen' },
    enrollToken: 'tok', inventory: '{"hostname":"gw-7","cpus":4}', updateState: UpdateState.downloaded, updateResult: UpdateResult.deferred,
  },
  { type: 'query', seq: 77 },
  { type: 'jobPoll', seq: 3 },
  { type: 'job', seq: 3, jobId: 12, kind: 1, params: '{"since":"2026-11-23T00:00:00Z","severity":"error"}' },
  { type: 'jobResult', jobId: 12, code: 2, message: 'no such file: app.log' },
  { type: 'jobAck', jobId: 12 },
  { type: 'fileOffer', transferId: 44, jobId: 12, size: 2 ** 40 + 5, chunkSize: 1400, sha256: new Uint8Array(32).fill(9), name: 'logs.txt' },
  { type: 'registered', clientId: id, seq: 5, leaseMs: 31_000, renewMs: 10_000, enrollment: Enrollment.pending },
  { type: 'offer', transferId: 9, manifest: new Uint8Array([1, 2, 3]), signature: new Uint8Array(64).fill(1), contentKey: new Uint8Array(32).fill(2), sealId: new Uint8Array(16).fill(3) },
  { type: 'data', transferId: 9, index: 3, payload: new Uint8Array(MAX_CHUNK_BYTES).fill(4) },
  { type: 'ack', transferId: 9, cumulative: 10, window: 2048, echo: 12, sack: new Uint8Array([0b1010_0000]) },
  { type: 'result', transferId: 9, code: 2, active: v, message: 'version 1.0.0 is not newer — ✓' },
  { type: 'resultAck', transferId: 9 },
  { type: 'abort', transferId: 9, code: 12, message: 'no such transfer here' },
  { type: 'multicast', transferId: 9, groupTransferId: 0x8000_0001, port: 7702, address: 'ff15::77' },
  { type: 'multicastLeave', transferId: 9, groupTransferId: 0x8000_0001 },
];

function hex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/\s/g, ''), 'hex'));
}

describe('the wire codec', () => {
  for (const msg of examples) {
    it(`round-trips ${msg.type}`, () => {
      expect(decode(encode(msg))).toEqual(msg);
    });
  }

  it('lays out DATA as docs/protocol.md says', () => {
    const bytes = encode({ type: 'data', transferId: 0x01020304, index: 5, payload: new Uint8Array([0xaa, 0xbb]) });
    expect(Buffer.from(bytes).toString('hex')).toBe('4e580104' + '01020304' + '00000005' + 'aabb');
  });

  it('refuses to encode what it could not decode', () => {
    expect(() => encode({ type: 'offer', transferId: 1, manifest: new Uint8Array(MAX_MANIFEST_BYTES + 1), signature: new Uint8Array(64), contentKey: new Uint8Array(32), sealId: new Uint8Array(16) })).toThrow(RangeError);
    expect(() => encode({ type: 'data', transferId: 1, index: 0, payload: new Uint8Array(0) })).toThrow(RangeError);
    expect(() => encode({ type: 'ack', transferId: 1, cumulative: 0, window: 1, echo: 0, sack: new Uint8Array(MAX_SACK_BITMAP_BYTES + 1) })).toThrow(RangeError);
  });

  describe('given hostile input', () => {
    const table: [string, Uint8Array, string][] = [
      ['nothing', new Uint8Array(0), 'truncated'],
      ['a partial header', hex('4e58 01'), 'truncated'],
      ['the wrong magic', hex('4e59 01 01'), 'bad-magic'],
      ['a future protocol version', hex('4e58 02 01'), 'bad-version'],
      ['an unknown type', hex('4e58 01 63'), 'bad-type'],
      ['a REGISTER cut short', hex('4e58 01 01 0707'), 'truncated'],
      ['an OFFER whose manifest length exceeds the datagram', hex('4e58 01 03 00000001 ffff 00'), 'too-long'],
      ['an OFFER whose manifest length runs past the end', hex('4e58 01 03 00000001 0010 00'), 'truncated'],
      ['a DATA without payload', hex('4e58 01 04 00000001 00000000'), 'empty-chunk'],
      ['a DATA with a chunk over 1400 bytes', new Uint8Array([...hex('4e58 01 04 00000001 00000000'), ...new Uint8Array(1401)]), 'too-long'],
      ['an ACK whose SACK length is huge', hex('4e58 01 05 00000001 00000000 0001 00000000 ffff'), 'too-long'],
      ['a RESULT with invalid UTF-8', hex('4e58 01 06 00000001 00 00000001 00000000 00000000 0002 c328'), 'bad-utf8'],
      ['a RESULT_ACK with trailing bytes', hex('4e58 01 07 00000001 00'), 'trailing'],
      ['a datagram larger than any we send', new Uint8Array([...hex('4e58 01 04'), ...new Uint8Array(2000)]), 'too-long'],
    ];
    for (const [what, bytes, code] of table) {
      it(`rejects ${what} with ${code}`, () => {
        let caught: unknown;
        try { decode(bytes); } catch (err) { caught = err; }
        expect(caught).toBeInstanceOf(DecodeError);
        expect((caught as DecodeError).code).toBe(code);
      });
    }
  });

  it('decodes a peer\'s text without the controls a terminal would obey', () => {
    // An enrolled device's RESULT text, once printed raw: it recoloured the console and forged a line.
    const forged = '\x1b[31mred\x1b[0m\r\npush finished: 9 done, 0 failed\x07 \u202egnp.exe\u0085';
    const got = decode(encode({ type: 'result', transferId: 9, code: 2, active: v, message: forged }));
    expect(got).toMatchObject({ message: '\ufffd[31mred\ufffd[0m  push finished: 9 done, 0 failed\ufffd \ufffdgnp.exe\ufffd' });
    const name = decode(encode({ type: 'fileOffer', transferId: 1, jobId: 2, size: 3, chunkSize: 1400, sha256: new Uint8Array(32), name: 'a\u0000b\tc' }));
    expect(name).toMatchObject({ name: 'a\ufffdb c' });
  });

  it('decodes random bytes to a message or a DecodeError, never anything else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => {
      try { decode(bytes); } catch (err) { expect(err).toBeInstanceOf(DecodeError); }
    }), { numRuns: 5000 });
  });

  it('decodes random bytes behind a valid header to a message or a DecodeError', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 12 }), fc.uint8Array({ maxLength: 200 }), (type, body) => {
      try { decode(new Uint8Array([0x4e, 0x58, 1, type, ...body])); } catch (err) { expect(err).toBeInstanceOf(DecodeError); }
    }), { numRuns: 5000 });
  });

  it('round-trips any ACK and DATA (encode then decode is the identity)', () => {
    const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
    fc.assert(fc.property(u32, u32, fc.integer({ min: 0, max: 0xffff }), u32, fc.uint8Array({ maxLength: MAX_SACK_BITMAP_BYTES }),
      (transferId, cumulative, window, echo, sack) => {
        const msg: Message = { type: 'ack', transferId, cumulative, window, echo, sack };
        expect(decode(encode(msg))).toEqual(msg);
      }));
    fc.assert(fc.property(u32, u32, fc.uint8Array({ minLength: 1, maxLength: MAX_CHUNK_BYTES }), (transferId, index, payload) => {
      const msg: Message = { type: 'data', transferId, index, payload };
      expect(decode(encode(msg))).toEqual(msg);
    }));
  });
});
