/** The secure channel: handshake, AEAD frames, replay window, cookies, rate limits (fake network and clock). */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DecodeError } from '../../src/errors.js';
import { decodeEnvelope, encodeRefused, EnvelopeType, INIT_BYTES, RefusedReason } from '../../src/protocol/envelope.js';
import { ClientChannel } from '../../src/session/client-channel.js';
import { COOKIE_LIFETIME_MS, CookieJar } from '../../src/session/cookie.js';
import { clientIdOf, createInit, createResponse, keyPairFromSecret, newKeyPair, readInit, readResponse, type KeyPair } from '../../src/session/handshake.js';
import { KeyedBuckets, TokenBucket } from '../../src/session/rate-limit.js';
import { REPLAY_WINDOW, ReplayWindow } from '../../src/session/replay-window.js';
import { ServerChannel, type AuthenticatedPeer, type ServerChannelLimits } from '../../src/session/server-channel.js';
import { FakeClock, FakeNetwork, type Sent } from '../support/fake-network.js';

const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const newKeys = (): KeyPair => keyPairFromSecret(random(32));

describe('the handshake', () => {
  const server = newKeys();
  const client = newKeys();

  function init(stamp = 1, serverPublic = server.publicKey) {
    return createInit({ clientStatic: client, serverPublic, senderIndex: 7, cookie: new Uint8Array(16), stamp, ephemeral: newKeys() });
  }

  it('gives both ends the same keys, and the server the client key and stamp', () => {
    const { bytes, initiation } = init(42);
    const frame = decodeEnvelope(bytes);
    if (frame.type !== 'init') throw new Error('not an INIT');
    const accepted = readInit(server, frame, () => undefined);
    expect(Buffer.from(accepted.clientPublic)).toEqual(Buffer.from(client.publicKey));
    expect(accepted.stamp).toBe(42);
    const response = createResponse(accepted, 99, newKeys());
    const r = decodeEnvelope(response.bytes);
    if (r.type !== 'response') throw new Error('not a RESPONSE');
    const clientKeys = readResponse(initiation, client, r);
    const sealed = clientKeys.send.seal(0, new Uint8Array(4), Buffer.from('hello'));
    expect(response.keys.receive.open(0, new Uint8Array(4), sealed)?.toString()).toBe('hello');
    const back = response.keys.send.seal(0, new Uint8Array(4), Buffer.from('hi'));
    expect(clientKeys.receive.open(0, new Uint8Array(4), back)?.toString()).toBe('hi');
  });

  it('fails for an INIT made for another server key, or with any bit flipped', () => {
    const other = init(1, newKeys().publicKey);
    const f = decodeEnvelope(other.bytes);
    if (f.type !== 'init') throw new Error('not an INIT');
    expect(() => readInit(server, f, () => undefined)).toThrow(/does not decrypt/);
    const good = init(1).bytes;
    // Every bit after the cookie (which the handshake does not cover: it is the transport's proof).
    for (let bit = (4 + 4 + 16) * 8; bit < INIT_BYTES * 8; bit += 13) {
      const bad = Buffer.from(good);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const frame = decodeEnvelope(bad);
      if (frame.type !== 'init') throw new Error('not an INIT');
      expect(() => readInit(server, frame, () => undefined)).toThrow();
    }
  });

  it('lets the server refuse a key before the second key exchange', () => {
    const frame = decodeEnvelope(init().bytes);
    if (frame.type !== 'init') throw new Error('not an INIT');
    expect(() => readInit(server, frame, () => { throw new Error('revoked'); })).toThrow('revoked');
  });

  it('makes the client refuse a RESPONSE from anyone without the server key', () => {
    const { bytes, initiation } = init();
    const frame = decodeEnvelope(bytes);
    if (frame.type !== 'init') throw new Error('not an INIT');
    // An impostor who saw the INIT but holds another key cannot answer it.
    const impostor = newKeys();
    const accepted = { ...readInit(server, frame, () => undefined), es: random(32) };
    const fake = decodeEnvelope(createResponse(accepted, 5, newKeys()).bytes);
    if (fake.type !== 'response') throw new Error('not a RESPONSE');
    expect(() => readResponse(initiation, client, fake)).toThrow(/not from the server key/);
    expect(impostor.publicKey).not.toEqual(server.publicKey);
  });

  it('makes fresh key pairs whose public half is that of the secret, and never hangs making them', () => {
    for (let i = 0; i < 50; i++) {
      const pair = newKeyPair();
      expect(Buffer.from(keyPairFromSecret(pair.secretKey).publicKey)).toEqual(Buffer.from(pair.publicKey));
    }
    // Node 20's generateKeyPairSync + export deadlocked within a few thousand keys (a garbage
    // collection during the export): a server doing handshakes hung. In a child process, so a
    // hang is a failure, not a stuck test run.
    const handshake = new URL('../../dist/session/handshake.js', import.meta.url).href;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e',
      `const { newKeyPair } = await import(${JSON.stringify(handshake)}); for (let i = 0; i < 20000; i++) newKeyPair(); console.log('made')`,
    ], { timeout: 20_000, encoding: 'utf8' });
    expect({ status: run.status, signal: run.signal, out: run.stdout.trim(), err: run.stderr }).toEqual({ status: 0, signal: null, out: 'made', err: '' });
  }, 30_000);

  it('derives the client id from the key', () => {
    expect(Buffer.from(clientIdOf(client.publicKey)).toString('hex')).toMatch(/^[0-9a-f]{32}$/);
    expect(clientIdOf(client.publicKey)).toEqual(clientIdOf(client.publicKey));
    expect(clientIdOf(client.publicKey)).not.toEqual(clientIdOf(server.publicKey));
  });
});

describe('the envelope decoder', () => {
  it('only ever throws DecodeError on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => {
      try {
        decodeEnvelope(bytes);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
      }
    }), { numRuns: 5000 });
  });

  it('calls a bare message outside a session unauthenticated', () => {
    expect(() => decodeEnvelope(Buffer.from([0x4e, 0x58, 1, 1, 0, 0]))).toThrow(expect.objectContaining({ code: 'unauthenticated' }));
  });
});

describe('the replay window', () => {
  it('accepts each counter once, in any order within the window, and refuses older ones', () => {
    fc.assert(fc.property(fc.array(fc.nat(3 * REPLAY_WINDOW), { maxLength: 400 }), (counters) => {
      const w = new ReplayWindow();
      const seen = new Set<number>();
      let top = -1;
      for (const c of counters) {
        const expected = !seen.has(c) && (c > top || top - c < REPLAY_WINDOW - 32);
        expect(w.isFresh(c)).toBe(expected);
        if (expected) { w.mark(c); seen.add(c); top = Math.max(top, c); }
      }
    }), { numRuns: 300 });
  });
});

describe('cookies', () => {
  it('are valid for the address and port they were made for, for one to two lifetimes', () => {
    const jar = new CookieJar(random, 0);
    const c = jar.make('127.0.0.1', 5000, 0);
    expect(jar.isValid(c, '127.0.0.1', 5000, 10)).toBe(true);
    expect(jar.isValid(c, '127.0.0.1', 5001, 10)).toBe(false);
    expect(jar.isValid(c, '127.0.0.2', 5000, 10)).toBe(false);
    expect(jar.isValid(c, '127.0.0.1', 5000, COOKIE_LIFETIME_MS + 1)).toBe(true);
    expect(jar.isValid(c, '127.0.0.1', 5000, 2 * COOKIE_LIFETIME_MS + 2)).toBe(false);
  });

  it('never take all zeros (what a client sends before it has a cookie), and answer a failed check with the right cookie', () => {
    const jar = new CookieJar(random, 0);
    expect(jar.isValid(new Uint8Array(16), '127.0.0.1', 5000, 0)).toBe(false);
    // A check that fails, then the reply for the same sender (reusing that check's hash): it is
    // the cookie this sender must echo, and only this sender.
    expect(jar.isValid(new Uint8Array(16).fill(7), '127.0.0.1', 5000, 1)).toBe(false);
    const reply = jar.make('127.0.0.1', 5000, 1);
    expect(jar.isValid(reply, '127.0.0.1', 5000, 2)).toBe(true);
    expect(jar.isValid(jar.make('127.0.0.1', 5001, 2), '127.0.0.1', 5000, 2)).toBe(false);
    // After the secret rotates, a fresh cookie differs from the old (nothing stale is reused).
    const later = jar.make('127.0.0.1', 5000, COOKIE_LIFETIME_MS + 5);
    expect(Buffer.from(later).equals(Buffer.from(reply))).toBe(false);
    expect(jar.isValid(reply, '127.0.0.1', 5000, COOKIE_LIFETIME_MS + 6)).toBe(true); // the previous secret's
  });
});

describe('token buckets', () => {
  it('allow a burst, then the rate', () => {
    const b = new TokenBucket(10, 5, 0);
    expect(Array.from({ length: 8 }, () => b.take(0)).filter(Boolean)).toHaveLength(5);
    expect(b.take(50)).toBe(false); // half a token
    expect(b.take(100)).toBe(true);
  });

  it('keep one bucket per key, and a bounded number of keys', () => {
    const k = new KeyedBuckets(1, 1, 3);
    expect(k.take('a', 0)).toBe(true);
    expect(k.take('a', 0)).toBe(false);
    expect(k.take('b', 0)).toBe(true);
    for (const x of ['c', 'd', 'e']) k.take(x, 0); // 'a' is forgotten: a fresh bucket
    expect(k.take('a', 0)).toBe(true);
  });
});

describe('the secure channel', () => {
  const SERVER = { address: '127.0.0.1', port: 9000 };
  const CLIENT = { address: '127.0.0.1', port: 5000 };
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => { for (const c of closers.splice(0)) await c(); });

  function setup(limits: Partial<ServerChannelLimits> = {}, revoked = new Set<string>()) {
    const net = new FakeNetwork();
    const clock = new FakeClock();
    const serverKeys = newKeys();
    const server = new ServerChannel({ endpoint: net.endpoint(SERVER.address, SERVER.port), clock, identity: serverKeys, random, limits, isRevoked: (id) => revoked.has(id) });
    const atServer: { data: string; from: AuthenticatedPeer }[] = [];
    server.onDatagram((data, from) => atServer.push({ data: data.toString(), from }));
    let stamp = 0;
    const clientKeys = newKeys();
    const makeClient = (at = CLIENT, keys = clientKeys): { channel: ClientChannel; received: string[] } => {
      const channel = new ClientChannel({ endpoint: net.endpoint(at.address, at.port), server: SERVER, serverKey: serverKeys.publicKey, identity: keys, clock, random, nextStamp: () => ++stamp });
      const received: string[] = [];
      channel.onDatagram((d) => received.push(d.toString()));
      closers.push(() => channel.close());
      return { channel, received };
    };
    closers.push(() => server.close());
    return { net, clock, server, atServer, makeClient, clientId: Buffer.from(clientIdOf(clientKeys.publicKey)).toString('hex') };
  }

  it('shakes hands through a cookie, then carries messages both ways, authenticated', () => {
    const { net, server, atServer, makeClient, clientId } = setup();
    const { channel, received } = makeClient();
    channel.connect();
    net.flush();
    expect(channel.isEstablished).toBe(true);
    expect(server.stats.cookiesSent).toBe(1);
    expect(server.stats.handshakes).toBe(1);
    channel.send(Buffer.from('register'));
    net.flush();
    expect(atServer).toHaveLength(1);
    expect(atServer[0]!.data).toBe('register');
    expect(atServer[0]!.from.clientId).toBe(clientId);
    expect(server.send(Buffer.from('registered'), CLIENT)).toBe(true);
    net.flush();
    expect(received).toEqual(['registered']);
    // Nothing but the handshake crosses in the clear.
    for (const s of net.log) expect([EnvelopeType.init, EnvelopeType.cookie, EnvelopeType.response, EnvelopeType.sealed]).toContain(s.data[3]);
    expect(net.log.some((s) => s.data.includes(Buffer.from('register')))).toBe(false);
  });

  function established(limits?: Partial<ServerChannelLimits>) {
    const env = setup(limits);
    const client = env.makeClient();
    client.channel.connect();
    env.net.flush();
    client.channel.send(Buffer.from('hello'));
    env.net.flush();
    return { ...env, ...client };
  }

  it('drops a datagram with one flipped bit, a replayed one, and one from another address', () => {
    const { net, server, atServer, channel } = established();
    channel.send(Buffer.from('original'));
    const sealed = net.queue.splice(0)[0]!;
    const flipped = Buffer.from(sealed.data);
    flipped[flipped.length - 20]! ^= 0x01;
    net.inject(flipped, CLIENT, SERVER);
    expect(server.stats.badTag).toBe(1);
    net.inject(sealed.data, { address: '127.0.0.66', port: 5000 }, SERVER);
    expect(server.stats.wrongAddress).toBe(1);
    net.inject(sealed.data, CLIENT, SERVER);
    net.inject(sealed.data, CLIENT, SERVER);
    expect(server.stats.replayed).toBe(1);
    expect(atServer.map((m) => m.data)).toEqual(['hello', 'original']);
  });

  it('drops a captured handshake replayed later', () => {
    const { net, server, channel } = established();
    const init = net.log.filter((s: Sent) => s.data[3] === EnvelopeType.init).at(-1)!;
    const sessions = server.sessionCount;
    net.inject(init.data, CLIENT, SERVER);
    expect(server.stats.replayedHandshake).toBe(1);
    expect(server.sessionCount).toBe(sessions);
    expect(channel.isEstablished).toBe(true);
  });

  it('answers the same INIT again with the same RESPONSE while its session is unused: one key exchange, one session', () => {
    const { net, server, makeClient } = setup();
    const { channel } = makeClient();
    // The RESPONSE is lost (or late): the device's retry repeats the INIT it sent.
    net.filter = (s) => s.data[3] !== EnvelopeType.response;
    channel.connect();
    net.flush();
    const init = net.log.filter((s) => s.data[3] === EnvelopeType.init).at(-1)!;
    const response = net.log.filter((s) => s.data[3] === EnvelopeType.response);
    expect(response).toHaveLength(1);
    expect(server.stats.handshakes).toBe(1);
    net.filter = () => true;
    net.inject(init.data, CLIENT, SERVER);
    const again = net.queue.filter((s) => s.data[3] === EnvelopeType.response);
    expect(again.map((s) => s.data)).toEqual([response[0]!.data]);
    expect(server.stats).toMatchObject({ handshakes: 1, repeatedInit: 1, replayedHandshake: 0 });
    expect(server.sessionCount).toBe(1);
    net.flush();
    expect(channel.isEstablished).toBe(true);
    // The same bytes from another address get no RESPONSE (its cookie is not for that address).
    net.inject(init.data, { address: '127.0.0.66', port: 5000 }, SERVER);
    expect(net.queue.filter((s) => s.data[3] === EnvelopeType.response)).toHaveLength(0);
    net.queue.length = 0;
    // Once the session is used, the INIT is a replay like any other.
    channel.send(Buffer.from('hello'));
    net.flush();
    net.inject(init.data, CLIENT, SERVER);
    expect(server.stats.replayedHandshake).toBeGreaterThanOrEqual(1);
    expect(net.queue.filter((s) => s.data[3] === EnvelopeType.response)).toHaveLength(0);
  });

  it('repeats an unanswered INIT as it is for a while, then makes a new one', () => {
    vi.useFakeTimers();
    try {
      const { net, clock, makeClient } = setup();
      const { channel } = makeClient();
      // The server hears nothing: every INIT goes unanswered.
      net.filter = () => false;
      channel.connect();
      net.flush();
      vi.advanceTimersByTime(4000); // retries after 0.25–0.75 s, then 0.5–1.5 s, 1–3 s …
      const inits = net.log.filter((s) => s.data[3] === EnvelopeType.init).map((s) => s.data.toString('hex'));
      expect(inits.length).toBeGreaterThanOrEqual(3);
      expect(new Set(inits).size).toBe(1);
      clock.t += 5000; // the channel's clock: the INIT is now 5 s old
      vi.advanceTimersByTime(30_000);
      const later = net.log.filter((s) => s.data[3] === EnvelopeType.init).map((s) => s.data.toString('hex'));
      expect(new Set(later).size).toBeGreaterThan(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps no state and does no key exchange for an INIT without a valid cookie', () => {
    const { net, server, makeClient } = setup();
    const { channel } = makeClient();
    channel.connect();
    const first = net.queue.splice(0)[0]!;
    const bogus = Buffer.from(first.data);
    bogus.fill(0xaa, 8, 24); // a made-up cookie
    net.inject(bogus, CLIENT, SERVER);
    net.inject(first.data, CLIENT, SERVER);
    expect(server.stats.badCookie).toBe(1);
    expect(server.stats.cookiesSent).toBe(2);
    expect(server.stats.handshakes + server.stats.badHandshake).toBe(0);
    expect(server.sessionCount).toBe(0);
    // Cookie replies are never larger than what they answer.
    for (const s of net.queue) expect(s.data.length).toBeLessThanOrEqual(first.data.length);
  });

  it('rate-limits handshakes per address, whatever the keys', () => {
    const { net, server, makeClient } = setup({ handshakeBurstPerAddress: 3, handshakesPerAddressPerSecond: 1 });
    for (let i = 0; i < 6; i++) {
      const { channel } = makeClient({ address: '127.0.0.9', port: 6000 + i }, newKeys());
      channel.connect();
    }
    net.flush();
    expect(server.stats.handshakes).toBe(3);
    expect(server.stats.rateLimited).toBe(3);
  });

  it('refuses the handshake of a revoked key', () => {
    const revoked = new Set<string>();
    const env = setup({}, revoked);
    revoked.add(env.clientId);
    const { channel } = env.makeClient();
    channel.connect();
    env.net.flush();
    expect(env.server.stats.revokedKey).toBe(1);
    expect(channel.isEstablished).toBe(false);
  });

  it('rekeys: the new session takes over once the client uses it, the old one retires', () => {
    const { net, clock, server, atServer, channel, received } = established();
    channel.connect(); // as the rekey timer does
    net.flush();
    expect(server.stats.handshakes).toBe(2);
    // Until the client speaks on the new session, the server still sends on the old one, which
    // the client still accepts.
    server.send(Buffer.from('on the old session'), CLIENT);
    net.flush();
    channel.send(Buffer.from('first on the new'));
    net.flush();
    server.send(Buffer.from('on the new session'), CLIENT);
    net.flush();
    expect(received).toEqual(['on the old session', 'on the new session']);
    expect(atServer.map((m) => m.data)).toEqual(['hello', 'first on the new']);
    clock.t += 11_000;
    server.sweep(clock.now());
    expect(server.sessionCount).toBe(1);
  });

  it('tells a device whose session it does not have, and the device shakes hands at once; a notice for another index changes nothing', () => {
    const { net, clock, server, atServer, channel } = established();
    const handshakes = channel.stats.handshakes;
    // A stranger's notice naming some other index is ignored.
    net.inject(encodeRefused({ receiverIndex: 12345, reason: RefusedReason.unknownSession, serverKey: new Uint8Array(32) }), SERVER, CLIENT);
    expect(channel.stats.handshakes).toBe(handshakes);
    clock.t += 181_000;
    server.sweep(clock.now()); // the server forgets the session (as a restarted one would)
    channel.send(Buffer.from('lost'));
    net.flush();
    expect(server.stats.unknownSession).toBe(1);
    expect(channel.stats.handshakes).toBe(handshakes + 1); // told, it shook hands again
    channel.send(Buffer.from('back'));
    net.flush();
    expect(atServer.map((m) => m.data)).toEqual(['hello', 'back']);
  });

  it('puts its node number in the top byte of every session index', () => {
    const net = new FakeNetwork();
    const clock = new FakeClock();
    const serverKeys = newKeys();
    const server = new ServerChannel({ endpoint: net.endpoint(SERVER.address, SERVER.port), clock, identity: serverKeys, random, nodeNumber: 7 });
    closers.push(() => server.close());
    for (let i = 0; i < 20; i++) {
      const channel = new ClientChannel({ endpoint: net.endpoint('127.0.0.1', 6000 + i), server: SERVER, serverKey: serverKeys.publicKey, identity: newKeys(), clock, random, nextStamp: () => 1 });
      closers.push(() => channel.close());
      channel.connect();
      net.flush();
      net.flush();
      expect(channel.isEstablished).toBe(true);
    }
    const indexes = net.log.filter((d) => d.data[3] === EnvelopeType.response).map((d) => d.data.readUInt32BE(4));
    expect(indexes.length).toBe(20);
    expect(indexes.every((i) => i >>> 24 === 7)).toBe(true);
  });

  it('forgets idle sessions; the client then shakes hands again when told to', () => {
    const { net, clock, server, atServer, channel } = established();
    clock.t += 181_000;
    server.sweep(clock.now());
    expect(server.sessionCount).toBe(0);
    channel.send(Buffer.from('lost'));
    net.flush();
    expect(server.stats.unknownSession).toBe(1);
    channel.reconnect();
    net.flush();
    channel.send(Buffer.from('back'));
    net.flush();
    expect(atServer.map((m) => m.data)).toEqual(['hello', 'back']);
  });
});

describe('X25519 by node:crypto', () => {
  it('agrees with tweetnacl on keys and shared secrets, and refuses a low-order public key', async () => {
    const nacl = (await import('tweetnacl')).default;
    const { dh, keyPairFromSecret } = await import('../../src/session/handshake.js');
    for (let i = 0; i < 20; i++) {
      const a = nacl.randomBytes(32);
      const b = nacl.randomBytes(32);
      expect(Buffer.from(keyPairFromSecret(a).publicKey)).toEqual(Buffer.from(nacl.box.keyPair.fromSecretKey(a).publicKey));
      const bPublic = nacl.box.keyPair.fromSecretKey(b).publicKey;
      expect(Buffer.from(dh(a, bPublic))).toEqual(Buffer.from(nacl.scalarMult(a, bPublic)));
    }
    expect(() => dh(nacl.randomBytes(32), new Uint8Array(32))).toThrow(/low-order/);
  });
});
