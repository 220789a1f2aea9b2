/** What a release is for, what a device is, and the signed manifest that carries the first. */
import { describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import { describeCompatibility, mismatch, parseCompatibility, parseFor } from '../../src/security/compatibility.js';
import { signManifest, verifyManifest, type Manifest } from '../../src/security/manifest.js';

describe('compatibility', () => {
  it('--for flags: lists per key, a version range for the agent, mistakes refused', () => {
    expect(parseFor([])).toBeUndefined();
    expect(parseFor(['type=gateway,kiosk', 'arch=arm64', 'agent=>=0.1.0 <2.0.0'])).toEqual({ type: ['gateway', 'kiosk'], arch: ['arm64'], agent: '>=0.1.0 <2.0.0' });
    expect(() => parseFor(['colour=red'])).toThrow(/expected type\|product\|arch\|channel\|agent=VALUE/);
    expect(() => parseFor(['type='])).toThrow(/values are 1-64 letters/);
    expect(() => parseFor(['type=a b'])).toThrow(/values are 1-64 letters/);
    expect(() => parseFor(['type=a', 'type=b'])).toThrow(/given twice/);
    expect(() => parseFor(['agent=newest'])).toThrow(/comparisons like/);
  });

  it('a device matches when every key given holds', () => {
    const device = { type: 'gateway', arch: 'arm64', channel: 'stable', product: 'nxtgen', agent: '0.3.1' };
    expect(mismatch(undefined, device)).toBeUndefined();
    expect(mismatch({ type: ['gateway', 'kiosk'], arch: ['arm64'] }, device)).toBeUndefined();
    expect(mismatch({ type: ['kiosk'] }, device)).toBe("it is for type kiosk; this device's type is gateway");
    expect(mismatch({ channel: ['beta'] }, device)).toBe("it is for channel beta; this device's channel is stable");
    expect(mismatch({ type: ['gateway'] }, { arch: 'x64' })).toBe("it is for type gateway; this device's type is not set");
    expect(mismatch({ agent: '>=0.3.0 <0.4.0' }, device)).toBeUndefined();
    expect(mismatch({ agent: '>=0.3.2' }, device)).toBe('it needs agent >=0.3.2; this device runs 0.3.1');
    expect(mismatch({ agent: '=0.3.1' }, device)).toBeUndefined();
    expect(mismatch({ agent: '0.3.1' }, { ...device, agent: undefined })).toMatch(/runs an unknown version/);
    expect(describeCompatibility({ type: ['gateway'], agent: '>=1.0.0' })).toBe('type=gateway agent=>=1.0.0');
  });

  it('is signed into the manifest; a manifest without it reads as before; a bad one is refused', () => {
    const keys = nacl.sign.keyPair();
    const signer = { publicKey: keys.publicKey, sign: (b: Uint8Array) => nacl.sign.detached(b, keys.secretKey) };
    const base: Manifest = {
      name: 'm.mjs', version: { major: 2, minor: 0, patch: 0 }, size: 10, sha256: 'a'.repeat(64), chunkSize: 1400,
      created: '2026-11-30T00:00:00.000Z', expires: '2026-12-07T00:00:00.000Z', targets: 'all',
    };
    const plain = signManifest(base, signer);
    expect(Buffer.from(plain.bytes).toString()).not.toMatch(/"for"/);
    expect(verifyManifest(plain.bytes, plain.signature, keys.publicKey).for).toBeUndefined();
    const gw = signManifest({ ...base, for: { type: ['gateway'] } }, signer);
    expect(verifyManifest(gw.bytes, gw.signature, keys.publicKey).for).toEqual({ type: ['gateway'] });
    // Changing what it is for breaks the signature.
    const widened = Buffer.from(Buffer.from(gw.bytes).toString().replace('"gateway"', '"kiosk"'));
    expect(() => verifyManifest(widened, gw.signature, keys.publicKey)).toThrow(/signature does not verify/);
    expect(() => parseCompatibility({ type: 'gateway' })).toThrow(/manifest "for"/);
    expect(() => parseCompatibility({ colour: ['red'] })).toThrow(/manifest "for"/);
  });
});
