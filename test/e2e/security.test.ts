/**
 * The security issue's checks with real processes and sockets: enrollment (pending, approve,
 * reject, revoke), datagrams tampered with, replayed, or sent from another address, a captured
 * handshake replayed, a flood of forged registrations during a push, and what an enrolled device
 * that misbehaves can do (nothing it says is obeyed by the operator's terminal, and its reports
 * are bounded).
 */
import dgram from 'node:dgram';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHUNK_ENTRY_HEADER_BYTES, CHUNKS_HEADER_BYTES, EnvelopeType, INIT_BYTES, PIECE_HEADER_BYTES, forEachChunk } from '../../src/protocol/envelope.js';
import { encode, Enrollment, type JobMessage, type Message, type OfferMessage, type RegisteredMessage, type ResultMessage, type TrialAckMessage } from '../../src/protocol/messages.js';
import { ResultCode } from '../../src/protocol/result-codes.js';
import { Proc, ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { UdpProxy, bulkChunks, isBulkData, type ProxyRule } from '../support/udp-proxy.js';
import { writeModule } from '../support/modules.js';
import { rogueDevice, type RogueDevice } from '../support/rogue-device.js';

const V2 = join(ROOT, 'plugins/libfunctional_2_0.mjs');

/** Overwrite every sealed chunk in a CHUNKS datagram (after `from`) with seeded junk, keeping the
 *  entry headers: a well-formed frame whose chunks are forged. */
function randomFill(frame: Buffer, from: number, _original: Buffer, seed: number): void {
  let x = seed * 2654435761 + 1;
  let at = from;
  forEachChunk(frame.subarray(from), (_index, sealed) => {
    at += CHUNK_ENTRY_HEADER_BYTES;
    for (let i = 0; i < sealed.length; i++) { x = (x * 1103515245 + 12345) >>> 0; frame[at + i] = x >>> 24; }
    at += sealed.length;
  });
}
const NO_TOKEN = { NXT_ENROLL_TOKEN: '' };

let dir: string;
let server: Proc;
let port: number;
let trust: string;

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

/** A server of its own for each test, its state in a new directory. */
async function freshServer(): Promise<void> {
  dir = tempDir();
  ({ proc: server, port } = await startServer(join(dir, 'server')));
  trust = join(dir, 'server/release.pub');
}

/** A device behind `proxy` gets release A, then (after `endCapture`) release B, each checked
 *  done; the device. */
async function releasesAThenB(proxy: UdpProxy, endCapture: () => void): Promise<Proc> {
  const a = await startClient('a', proxy.port, join(dir, 'a'), trust);
  expect(await server.run(`push ${writeModule(dir, 'first_3_0.mjs', 1024 * 1024)}`, /push finished/)).toMatch(/1 done/);
  endCapture();
  const out = await server.run(`push ${writeModule(dir, 'second_4_0.mjs', 1024 * 1024, 9, 2)}`, /push finished/);
  expect(out).toMatch(/done: 9\.2 bulk active/);
  return a;
}

/** The server's counter `name` from `stats`, once it is at least `atLeast`. */
async function serverCounter(name: string, atLeast = 1): Promise<number> {
  for (;;) {
    const out = await server.run('stats', /channel: .*\n/);
    const n = Number(out.match(new RegExp(`${name} (\\d+)`))?.[1]);
    if (n >= atLeast) return n;
  }
}

async function clientCounter(client: Proc, name: string, atLeast = 1): Promise<number> {
  for (;;) {
    const out = await client.run('stats', /dropped: .*\n/);
    const n = Number(out.match(new RegExp(`${name} (\\d+)`))?.[1]);
    if (n >= atLeast) return n;
  }
}

describe('enrollment', () => {
  beforeEach(async () => {
    dir = tempDir();
    // Clients renew every second, so they learn decisions (and lose revoked sessions) quickly.
    ({ proc: server, port } = await startServer(join(dir, 'server'), ['--renew', '1000'], NO_TOKEN));
    trust = join(dir, 'server/release.pub');
  });

  const pending = /waiting for the operator to approve this device \(on the server: approve ([0-9a-f]{12})\)/;

  it('keeps a new device pending with nothing pushed to it until approved; then it gets the next push', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust, '127.0.0.1', [], { env: NO_TOKEN, until: pending });
    const id = a.output.match(pending)![1]!;
    await server.waitFor(new RegExp(`device ${id} asks to join from 127\\.0\\.0\\.1:\\d+ \\(.*CPUs.*key SHA256:`));
    expect(await server.run('requests', /pending.*\n/)).toMatch(new RegExp(`${id} +pending +127\\.0\\.0\\.1:\\d+ +SHA256:\\S+ +.*\\d+ CPUs, [\\d.]+ GiB RAM`));
    expect(await server.run(`push ${V2}`, /push: .*nothing sent/)).toMatch(/no clients are registered/);
    await server.run(`approve ${id}`, new RegExp(`${id} approved`));
    await a.waitFor('registered with the server');
    expect(await server.run(`push ${V2}`, /push finished/)).toMatch(/1 done, 0 failed/);
    await a.waitFor('Major = 8');
  });

  it('an enrollment token approves a device without the operator; a wrong one does not', async () => {
    const { proc: tokenServer, port: tokenPort } = await startServer(join(dir, 'token-server'), [], { NXT_ENROLL_TOKEN: 'right-token' });
    const wrong = await startClient('wrong', tokenPort, join(dir, 'w'), join(dir, 'token-server/release.pub'), '127.0.0.1', [], { env: { NXT_ENROLL_TOKEN: 'wrong-token' }, until: pending });
    const right = await startClient('right', tokenPort, join(dir, 'r'), join(dir, 'token-server/release.pub'), '127.0.0.1', [], { env: { NXT_ENROLL_TOKEN: 'right-token' } });
    const out = await tokenServer.run('clients --json', /\]\n/);
    const fleet = JSON.parse(out.slice(out.indexOf('['), out.lastIndexOf(']') + 1)) as { id: string }[];
    expect(fleet.map((c) => c.id.slice(0, 12))).toEqual([right.output.match(/nxt client ([0-9a-f]{12})/)![1]]);
    expect(wrong.output).not.toMatch(/registered with the server/);
  });

  it('rejects and revokes: such devices receive nothing, and the decisions survive a restart', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust, '127.0.0.1', [], { env: NO_TOKEN, until: pending });
    const b = await startClient('b', port, join(dir, 'b'), trust, '127.0.0.1', [], { env: NO_TOKEN, until: pending });
    const [idA, idB] = [a, b].map((c) => c.output.match(pending)![1]!);
    await server.run(`approve ${idA}`, /approved/);
    await a.waitFor('registered with the server');
    await server.run(`reject ${idB}`, /rejected/);
    await b.waitFor(/the server rejected this device/); // at its next renewal
    expect(await server.run(`push ${V2}`, /push finished/)).toMatch(/push .* to 1 client\(s\)[\s\S]*1 done, 0 failed/);
    await a.waitFor('Major = 8');
    expect(b.output).not.toMatch(/receiving|Major = 8/);

    await server.run(`revoke ${idA}`, /revoked/);
    expect(await serverCounter('revoked key')).toBeGreaterThan(0); // a's next handshake is refused
    await a.waitFor(/the server at .* refuses this device: its key is revoked there/); // and it says so
    expect(await server.run('push ' + join(ROOT, 'plugins/libfunctional_1_0.mjs') + ' --version 3.0.0', /push: .*nothing sent|push finished/)).toMatch(/nothing sent/);
    // The next release, with an approved device beside the revoked one: c gets it (and its
    // content key, in its session); a is offered nothing, so it never holds the key, and not
    // one sealed chunk is sent to its address.
    const c = await startClient('c', port, join(dir, 'c'), trust, '127.0.0.1', [], { env: NO_TOKEN, until: pending });
    const idC = c.output.match(pending)![1]!;
    await server.run(`approve ${idC}`, /approved/);
    await c.waitFor('registered with the server');
    const frames = async (): Promise<number> => Number(/chunk frames (\d+)/.exec(await a.run('stats', /dropped: .*\n/))?.[1]);
    const framesBefore = await frames();
    const aBefore = a.output.length;
    expect(await server.run(`push ${writeModule(dir, 'next_4_0.mjs', 256 * 1024)}`, /push finished/)).toMatch(/push .* to 1 client\(s\)[\s\S]*1 done, 0 failed/);
    await c.waitFor(/Major = 9\nMinor = 1/);
    expect(a.output.slice(aBefore)).not.toMatch(/receiving|Major = 9/);
    expect(await frames()).toBe(framesBefore);

    await server.stop();
    ({ proc: server, port } = await startServer(join(dir, 'server'), [], NO_TOKEN));
    const listed = await server.run('requests', /NxtServer# /);
    expect(listed).toMatch(new RegExp(`${idA} +revoked`));
    expect(listed).toMatch(new RegExp(`${idB} +rejected`));
  });
});

describe('the wire', () => {
  beforeEach(freshServer);

  it('drops a datagram with one flipped bit, and the push completes with the right bytes', async () => {
    let flipped = 0;
    const flipSome: ProxyRule = (data, direction) => {
      if (isBulkData(data, direction) && flipped < 3) {
        flipped++;
        const copy = Buffer.from(data);
        copy[copy.length - 100]! ^= 0x01;
        return [{ data: copy }];
      }
      return [{ data }];
    };
    const proxy = await UdpProxy.start(port, flipSome);
    try {
      const a = await startClient('a', proxy.port, join(dir, 'a'), trust);
      const out = await server.run(`push ${writeModule(dir, 'bulk_3_0.mjs', 64 * 1024)}`, /push finished/);
      expect(out).toMatch(/done: 9\.1 bulk active/);
      expect(flipped).toBe(3);
      // Each flip breaks one sealed chunk's tag: dropped and counted, and sent again.
      expect(await clientCounter(a, 'bad chunks', 3)).toBe(3);
    } finally {
      await proxy.close();
    }
  });

  it('drops forged chunks and chunks replayed from another release, and the push completes with the right bytes', async () => {
    // Release A's CHUNKS, captured; then, during release B's push, each of the first datagrams of
    // B is followed by a forged copy (same entries, random sealed bytes) and by one of A's,
    // relabelled with B's transfer id, both "from the server" (the proxy is the server's address).
    const fromA: Buffer[] = [];
    let capturing = true;
    let injected = 0;
    let injectedChunks = 0;
    const proxy = await UdpProxy.start(port, (data, direction) => {
      if (!isBulkData(data, direction)) return [{ data }];
      if (capturing) { fromA.push(Buffer.from(data)); return [{ data }]; }
      if (injected >= 6 || fromA.length === 0) return [{ data }];
      const forged = Buffer.from(data);
      randomFill(forged, CHUNKS_HEADER_BYTES, data, injected);
      const replayed = Buffer.from(fromA[injected % fromA.length]!);
      data.copy(replayed, 4, 4, 8); // B's transfer id
      injected += 2;
      injectedChunks += bulkChunks(forged, direction) + bulkChunks(replayed, direction);
      return [{ data: forged }, { data: replayed }, { data }];
    });
    try {
      const a = await releasesAThenB(proxy, () => { capturing = false; });
      expect(injected).toBe(6);
      expect(await clientCounter(a, 'bad chunks', injectedChunks)).toBe(injectedChunks);
      await a.waitFor(/Major = 9\nMinor = 2/);
    } finally {
      await proxy.close();
    }
  });

  it('in pieces: drops forged pieces and pieces replayed from another release; a planted piece costs a resend, never the bytes', async () => {
    // An Ethernet path: every chunk in six PIECE frames. During release B's push, the first
    // pieces are each preceded by three datagrams "from the server" (the proxy is its address):
    // a forged piece (a random token), one of release A's pieces relabelled with B's transfer id
    // (A's token), and one planted with B's own token (as one who watches the link could) and
    // junk bytes, which arrives first and is kept: its chunk fails its tag once whole, is
    // counted, and is sent again.
    await server.stop();
    ({ proc: server, port } = await startServer(join(dir, 'server'), ['--max-datagram', '1452']));
    const fromA: Buffer[] = [];
    let capturing = true;
    let planted = 0;
    const proxy = await UdpProxy.start(port, (data, direction) => {
      if (!isBulkData(data, direction)) return [{ data }];
      expect(data[3]).toBe(EnvelopeType.piece);
      if (capturing) { fromA.push(Buffer.from(data)); return [{ data }]; }
      if (planted >= 3 || fromA.length === 0) return [{ data }];
      const forged = Buffer.from(data);
      forged[14] = forged[14]! ^ 0xff;
      const replayed = Buffer.from(fromA[planted]!);
      data.copy(replayed, 4, 4, 8);
      const junk = Buffer.from(data);
      for (let i = PIECE_HEADER_BYTES; i < junk.length; i++) junk[i] = (i * 31 + planted) & 0xff;
      planted++;
      return [{ data: forged }, { data: replayed }, { data: junk }, { data }];
    });
    try {
      const a = await releasesAThenB(proxy, () => { capturing = false; });
      expect(planted).toBe(3);
      // The forged and replayed pieces: dropped at their token. The planted ones: their chunks
      // (the first three pieces were chunk 0's, so one chunk, or up to three) failed their tags.
      const stats = await a.run('stats', /bad chunks \d+/);
      expect(Number(/pieces \d+ \(\d+ by multicast, (\d+) dropped\)/.exec(stats)![1])).toBe(6);
      const bad = Number(/bad chunks (\d+)/.exec(stats)![1]);
      expect(bad).toBeGreaterThanOrEqual(1);
      expect(bad).toBeLessThanOrEqual(3);
      await a.waitFor(/Major = 9\nMinor = 2/);
    } finally {
      await proxy.close();
    }
  });

  it('drops replayed datagrams and ones sent from another address, without effect', async () => {
    const toServer: Buffer[] = [];
    const toClient: Buffer[] = [];
    const proxy = await UdpProxy.start(port, (data, direction) => {
      if (data[3] === EnvelopeType.sealed) (direction === 'to-server' ? toServer : toClient).push(Buffer.from(data));
      return [{ data }];
    });
    try {
      const a = await startClient('a', proxy.port, join(dir, 'a'), trust);
      expect(await server.run(`push ${V2}`, /push finished/)).toMatch(/1 done/);
      await a.waitFor('Major = 8');
      // Replays: the client's registration and ACKs to the server, the OFFER and DATA to the client
      // (a snapshot: renewals keep adding to the capture).
      const [up, down] = [[...toServer], [...toClient]];
      for (const d of up) await proxy.injectToServer(d);
      for (const d of down) await proxy.injectToClient(d);
      expect(await serverCounter('replayed', up.length)).toBe(up.length);
      expect(await clientCounter(a, 'replayed', down.length)).toBe(down.length);
      // The same genuine datagrams from an address that is not the session's.
      const spoofer = dgram.createSocket('udp4');
      await new Promise<void>((res) => spoofer.bind(0, '127.0.0.1', () => res()));
      for (const d of up) await new Promise<void>((res) => spoofer.send(d, port, '127.0.0.1', () => res()));
      spoofer.close();
      expect(await serverCounter('wrong address', up.length)).toBe(up.length);
      // Nothing happened: no second install, no new registration.
      expect(a.output.match(/Major = 8/g)).toHaveLength(1);
      expect(server.output.match(/client \w+ registered/g)).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });

  it('drops a captured handshake replayed later', async () => {
    const inits: Buffer[] = [];
    const proxy = await UdpProxy.start(port, (data, direction) => {
      if (direction === 'to-server' && data[3] === EnvelopeType.init && data.length === INIT_BYTES) inits.push(Buffer.from(data));
      return [{ data }];
    });
    try {
      await startClient('a', proxy.port, join(dir, 'a'), trust);
      // The last INIT carried the cookie and was answered; replayed from the same address (so
      // the cookie is still good), it must still be refused.
      await proxy.injectToServer(inits.at(-1)!);
      expect(await serverCounter('replayed handshake')).toBe(1);
      const stats = await server.run('stats', /channel: .*\n/);
      expect(stats).toMatch(/channel: 1 sessions, 1 handshakes/);
    } finally {
      await proxy.close();
    }
  });

  it('rekeys during a push without losing it', async () => {
    // A session every 100 ms: a 16 MiB push (a few hundred ms on loopback) crosses several.
    const a = await startClient('a', port, join(dir, 'a'), trust, '127.0.0.1', ['--rekey-after', '100']);
    const handshakes = async (): Promise<number> => Number((await a.run('stats', /dropped: .*\n/)).match(/(\d+) handshakes/)![1]);
    const before = await handshakes();
    const out = await server.run(`push ${writeModule(dir, 'bulk_3_0.mjs', 16 * 1024 * 1024)}`, /push finished/, 60_000);
    expect(out).toMatch(/done: 9\.1 bulk active/);
    await a.waitFor('Major = 9');
    expect(await handshakes() - before).toBeGreaterThanOrEqual(2);
    const stats = await a.run('stats', /dropped: .*\n/);
    expect(stats).toMatch(/bad tag 0, replayed 0/);
  });

  it('keeps serving a push through a flood of 10,000 forged registrations a second', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust);
    const file = writeModule(dir, 'bulk_3_0.mjs', 8 * 1024 * 1024);
    const pushed = server.run(`push ${file}`, /push finished/, 60_000);
    const sent = await flood(port, { perSecond: 10_000, seconds: 3 });
    expect(sent / 3).toBeGreaterThan(9_000);
    const out = await pushed;
    expect(out).toMatch(/done: 9\.1 bulk active/);
    await a.waitFor('Major = 9');
    const stats = await server.run('stats', /channel: .*\n/);
    // Every forged registration is accounted for: read and refused cheaply (a plain message outside
    // a session; an INIT without a valid cookie, answered by a cookie at most or rate-limited) or,
    // while the server was busy with the push, dropped by the kernel with the socket's buffer full.
    // How the two split depends on the machine (a busy 2-core CI runner read about half, a VM
    // where fresh memory is dear, the push slower, a fifth); a few go uncounted on the way (about
    // ten in 30,000 here), which is why the sum is not exact. A server deaf during a push would
    // read next to none: a tenth says it kept reading.
    const count = (name: string): number => Number(stats.match(new RegExp(`${name} (\\d+)`))![1]);
    const read = count('unauthenticated') + count('cookies sent') + count('rate-limited');
    const unread = count('unread, its socket\'s buffer full');
    expect(read + unread, `sent ${sent}, read ${read}, unread ${unread}`).toBeGreaterThan(sent * 0.9);
    expect(read, `sent ${sent}, read ${read}, unread ${unread}`).toBeGreaterThan(sent / 10);
    expect(stats).toMatch(/channel: 1 sessions/);
  }, 90_000);
});

describe('an enrolled device that misbehaves', () => {
  beforeEach(freshServer);

  it('cannot write to the operator\'s terminal nor flood the history, and the fleet is served meanwhile', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust);
    const rogue = await rogueDevice(port, join(dir, 'server/identity.pub'));
    const rogueId = Buffer.from(rogue.clientId).toString('hex').slice(0, 12);
    // Escape sequences (clear the screen, red) and a line feed with a line of the server's own.
    const evil = '\x1b[2J\x1b[31m\npush finished: 7 done, 0 failed';
    rogue.register({ product: { major: 5, minor: 6, productName: 'x\x1b[2J' }, inventory: JSON.stringify({ hostname: `gw${evil}` }) });
    await rogue.waitFor((m): m is RegisteredMessage => m.type === 'registered' && m.enrollment === Enrollment.approved, 0);

    // 200 probation outcomes, each new, each a rollback that would raise an alert.
    const version = { major: 9, minor: 9, patch: 0 };
    const acked = (m: Message): m is TrialAckMessage => m.type === 'trialAck' && rogue.heard.filter((h) => h.type === 'trialAck').length >= 200;
    const allAcked = rogue.waitFor(acked, 0);
    for (let seq = 1; seq <= 200; seq++) {
      rogue.send({ type: 'trialOutcome', seq, committed: false, code: ResultCode.loadFailed, version, sha256: new Uint8Array(32).fill(seq), active: version, message: evil });
    }
    await allAcked;
    const stats = await server.run('stats', /channel: .*\n/);
    const ignored = Number(/outcomes ignored (\d+)/.exec(stats)?.[1]);
    // A burst of 20, and one each 10 s after (the test takes seconds: none, or one).
    expect(ignored).toBeGreaterThanOrEqual(179);
    expect(ignored).toBeLessThanOrEqual(180);
    const listed = await server.run(`history ${rogueId} --last 1000 --json`, /(\[\{.*\}\]|\[\])\n/);
    const history = JSON.parse(/(\[\{.*\}\]|\[\])\n/.exec(listed)![1]!) as { result: string }[];
    expect(history.filter((e) => e.result.startsWith('rolled back'))).toHaveLength(200 - ignored);

    // A push to all: the real device takes it; the rogue refuses it with the same text.
    // (A line of its own: the rogue's text, on its result's line, says "push finished" too.)
    const pushed = server.run(`push ${V2}`, /^push finished: .*$/m);
    const offer = await rogue.waitFor((m): m is OfferMessage => m.type === 'offer', 0);
    rogue.send({ type: 'result', transferId: offer.transferId, code: ResultCode.badSignature, active: { major: 1, minor: 0, patch: 0 }, message: evil });
    const out = await pushed;
    expect(out).toMatch(/push finished: 1 done, 1 failed/);
    await a.waitFor('Major = 8');
    await server.run('clients', /NxtServer# /);
    await rogue.close();

    // What it said was printed (without the escapes) and never obeyed: no escape reached the
    // server's output, and no line of it stands alone as one of the server's.
    expect(server.output).toContain('\ufffd[2J\ufffd[31m push finished: 7 done, 0 failed');
    expect(server.output).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
    expect(server.output).not.toMatch(/^push finished: 7/m);
  }, 60_000);

  /** A rogue device, approved, that has polled for the job `job …` queued for it: the job. */
  async function rogueWithJob(job: string): Promise<{ rogue: RogueDevice; job: JobMessage }> {
    const rogue = await rogueDevice(port, join(dir, 'server/identity.pub'));
    const rogueId = Buffer.from(rogue.clientId).toString('hex').slice(0, 12);
    rogue.register();
    await rogue.waitFor((m): m is RegisteredMessage => m.type === 'registered' && m.enrollment === Enrollment.approved, 0);
    await server.run(`job ${job.replace('ID', rogueId)}`, /queued for .*\n/);
    rogue.send({ type: 'jobPoll', seq: 1 });
    return { rogue, job: await rogue.waitFor((m): m is JobMessage => m.type === 'job' && m.jobId > 0, 0) };
  }

  it('cannot upload a status report the server would have to parse for seconds', async () => {
    const { rogue, job } = await rogueWithJob('report ID');
    rogue.send({ type: 'fileOffer', transferId: 77, jobId: job.jobId, size: 2 * 1024 * 1024, chunkSize: 1400, sha256: new Uint8Array(32), name: 'report.json' });
    const refused = await rogue.waitFor((m): m is ResultMessage => m.type === 'result' && m.transferId === 77, 0);
    expect(refused.message).toBe('an upload of 2097152 bytes is over the server\'s limit of 1048576 for a report job');
  });

  it('holds one upload open for a job, however many it offers', async () => {
    const { rogue, job } = await rogueWithJob('logs ID');
    const openFiles = (): number => readdirSync(`/proc/${server.pid}/fd`).length;
    const before = openFiles();
    // 300 offers of an upload for the job, each under a transfer id of its own; each is answered
    // (an ACK to the first, a refusal to the rest).
    const answered = new Set<number>();
    const all = rogue.waitFor((m): m is Message => {
      if ((m.type === 'ack' || m.type === 'result') && m.transferId >= 1000) answered.add(m.transferId);
      return answered.size === 300;
    }, 0);
    for (let i = 0; i < 300; i++) {
      rogue.send({ type: 'fileOffer', transferId: 1000 + i, jobId: job.jobId, size: 10_000_000, chunkSize: 1400, sha256: new Uint8Array(32), name: `f${i}.log` });
    }
    await all;
    const refused = rogue.heard.filter((m) => m.type === 'result' && /under way already/.test(m.message));
    expect(refused).toHaveLength(299);
    expect(openFiles() - before).toBeLessThanOrEqual(2);
  }, 60_000);
});

/**
 * Forged registrations from 127.0.0.2–5, at `perSecond` for `seconds`: a third plain REGISTERs
 * (the pre-session protocol), a third INITs without a cookie, a third INITs with a made-up one.
 * Returns how many were sent.
 */
async function flood(target: number, o: { perSecond: number; seconds: number }): Promise<number> {
  const sockets = await Promise.all([2, 3, 4, 5].map((host) => new Promise<dgram.Socket>((res) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, `127.0.0.${host}`, () => res(s));
  })));
  const register = encode({
    type: 'register', clientId: new Uint8Array(16).fill(9), seq: 1, version: { major: 99, minor: 0, patch: 0 },
    product: { major: 9, minor: 9, productName: 'forged' }, enrollToken: 'guess', inventory: '{}', updateState: 0, updateResult: 0,
  });
  const init = (cookie: boolean): Buffer => {
    const b = Buffer.alloc(INIT_BYTES);
    b.set([0x4e, 0x58, 1, EnvelopeType.init]);
    for (let i = 4; i < INIT_BYTES; i++) b[i] = Math.floor(Math.random() * 256);
    if (!cookie) b.fill(0, 8, 24);
    return b;
  };
  const kinds = [register, init(false), init(true)];
  let sent = 0;
  const started = Date.now();
  const end = started + o.seconds * 1000;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = Date.now();
      const due = Math.min(o.perSecond * o.seconds, Math.floor(((now - started) / 1000) * o.perSecond));
      for (; sent < due; sent++) sockets[sent % sockets.length]!.send(kinds[sent % 3]!, target, '127.0.0.1');
      if (now >= end) resolve();
      else setTimeout(tick, 5);
    };
    tick();
  });
  await Promise.all(sockets.map((s) => new Promise<void>((res) => s.close(() => res()))));
  return sent;
}
