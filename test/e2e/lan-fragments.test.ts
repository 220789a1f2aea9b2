/**
 * A device on the server's own LAN (two network namespaces joined by a veth pair, MTU 1500: root,
 * which CI has; the tests say why they skip elsewhere). Its datagrams carry one large chunk each,
 * which IP cuts into fragments; `--max-datagram 1472` keeps them whole, the chunks cut into
 * pieces by nxt; where fragments are dropped on the way, the push goes again at once in pieces,
 * and so do the next ones; where pieces are dropped too, in small chunks.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Proc, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { writeModule } from '../support/modules.js';
import { LARGE_CHUNK_BYTES, PIECE_CHUNK_BYTES } from '../../src/net/fragments.js';
import { TAG_BYTES } from '../../src/protocol/envelope.js';
import { ensureCommands } from '../support/debian.js';

const SERVER_NS = `nxt-lan-s-${process.pid}`;
const DEVICE_NS = `nxt-lan-d-${process.pid}`;
const SERVER_ADDR = '10.207.0.1';
const DEVICE_ADDR = '10.207.0.2';
const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;
const canDrop = canNetns && ensureCommands(['nft'], ['nftables'], 'the dropped-fragments test');

beforeAll(() => {
  if (!canNetns) return;
  for (const ns of [SERVER_NS, DEVICE_NS]) {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  execFileSync('ip', ['-n', SERVER_NS, 'link', 'add', 'lan0', 'mtu', '1500', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', DEVICE_NS]);
  execFileSync('ip', ['-n', SERVER_NS, 'addr', 'add', `${SERVER_ADDR}/24`, 'dev', 'lan0']);
  execFileSync('ip', ['-n', DEVICE_NS, 'addr', 'add', `${DEVICE_ADDR}/24`, 'dev', 'lan0']);
  for (const ns of [SERVER_NS, DEVICE_NS]) execFileSync('ip', ['-n', ns, 'link', 'set', 'lan0', 'up']);
});

afterAll(() => {
  if (!canNetns) return;
  for (const ns of [SERVER_NS, DEVICE_NS]) spawnSync('ip', ['netns', 'del', ns]);
});

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
  if (canDrop) spawnSync('ip', ['netns', 'exec', DEVICE_NS, 'nft', 'flush', 'ruleset']);
});

async function lan(serverExtra: string[] = []): Promise<{ dir: string; server: Proc; device: Proc }> {
  const dir = tempDir('nxt-lan-');
  const { proc: server, port } = await startServer(join(dir, 'server'), ['--peer-timeout', '2000', ...serverExtra], {}, 0, SERVER_NS);
  const device = await startClient('d', port, join(dir, 'd'), join(dir, 'server/release.pub'), SERVER_ADDR, [], { netns: DEVICE_NS });
  return { dir, server, device };
}

/** Push and return the server's output for it, through "push finished". */
async function push(server: Proc, file: string): Promise<string> {
  const at = server.type(`push ${file}`);
  await server.waitFor(/push finished: .*\n/, 60_000, at);
  return server.output.slice(at);
}

/** CHUNKS frames the device has received so far (one per datagram). */
async function framesOf(device: Proc): Promise<number> {
  return (await countsOf(device)).chunkFrames;
}

/** CHUNKS and PIECE frames the device has received so far. */
async function countsOf(device: Proc): Promise<{ chunkFrames: number; pieces: number; badPieces: number }> {
  const out = await device.run('stats', /bad chunks \d+/);
  const m = /pieces (\d+) \(\d+ by multicast, (\d+) dropped\); chunk frames (\d+)/.exec(out)!;
  return { pieces: Number(m[1]), badPieces: Number(m[2]), chunkFrames: Number(m[3]) };
}

/** PIECE frames a module of `bytes` takes at least: six a chunk, the last chunk's as few as fit. */
function piecesFor(bytes: number): number {
  const rest = bytes % PIECE_CHUNK_BYTES;
  return 6 * Math.floor(bytes / PIECE_CHUNK_BYTES) + (rest > 0 ? Math.ceil((rest + TAG_BYTES) / ((PIECE_CHUNK_BYTES + TAG_BYTES) / 6)) : 0);
}

/** An nftables table `table` on the device's interface, dropping what `rules` match as it
 *  arrives (before IP reassembly). */
function dropAtDevice(table: string, rules: string[]): void {
  execFileSync('ip', ['netns', 'exec', DEVICE_NS, 'nft', '-f', '-'], {
    input: `table netdev ${table} {\n chain in {\n  type filter hook ingress device "lan0" priority 0;\n${rules.map((r) => `  ${r}\n`).join('')} }\n}\n`,
  });
}

/** The nft counter of `table` in the device's namespace. */
function dropCount(table: string): number {
  return Number(/packets (\d+)/.exec(execFileSync('ip', ['netns', 'exec', DEVICE_NS, 'nft', 'list', 'table', 'netdev', table], { encoding: 'utf8' }))![1]);
}

const MiB = 1024 * 1024;

describe.skipIf(!canNetns)('a device on the server\'s LAN (network namespaces, needs root)', () => {
  it('gets one large chunk per datagram (fragmented by IP), or in pieces of whole datagrams with --max-datagram 1472', async () => {
    const { dir, server, device } = await lan();
    expect(await push(server, writeModule(dir, 'lan_9_1.mjs', 4 * MiB))).toMatch(/push finished: 1 done, 0 failed/);
    await device.waitFor(/Major = 9\nMinor = 1/);
    // 4 MiB in large chunks: 485 datagrams (and what was resent); 1400-byte ones would be ~3,000.
    const big = await framesOf(device);
    expect(big).toBeGreaterThanOrEqual(Math.ceil((4 * MiB) / LARGE_CHUNK_BYTES));
    expect(big).toBeLessThan(800);
    await stopAll();

    const whole = await lan(['--max-datagram', '1472']);
    expect(await push(whole.server, writeModule(whole.dir, 'lan_9_2.mjs', 4 * MiB, 9, 2))).toMatch(/push finished: 1 done, 0 failed/);
    await whole.device.waitFor(/Major = 9\nMinor = 2/);
    // 4 MiB in 8564-byte chunks of six pieces: 2,940 datagrams (and what was resent), none a CHUNKS.
    const counts = await countsOf(whole.device);
    expect(counts.chunkFrames).toBe(0);
    expect(counts.pieces).toBeGreaterThanOrEqual(piecesFor(4 * MiB));
    expect(counts.pieces).toBeLessThan(3500);
    expect(counts.badPieces).toBe(0);
  });

  it.skipIf(!canDrop)('where most fragments are lost, the push gives up on them mid-way and finishes in whole datagrams', async () => {
    const { dir, server, device } = await lan();
    // A fifth of the fragments is lost at the device (three datagrams of four, at six fragments
    // each); whole datagrams pass.
    dropAtDevice('lossyfrag', ['ip frag-off & 0x3fff != 0 numgen random mod 5 == 0 drop']);
    const out = await push(server, writeModule(dir, 'lossyfrag_9_1.mjs', 4 * MiB));
    expect(out).toMatch(/of the chunks sent in datagrams that IP fragments were resent: whole datagrams for 10 minutes, unless they lose as much, this push again at once/);
    expect(out).toMatch(/push finished: 1 done, 0 failed/);
    await device.waitFor(/Major = 9\nMinor = 1/);
  });

  it.skipIf(!canDrop)('where fragments are dropped, the push goes again at once in pieces, and so do the next', async () => {
    const { dir, server, device } = await lan();
    // Every fragment is dropped as it reaches the device (before reassembly); whole datagrams pass.
    dropAtDevice('nofrag', ['ip frag-off & 0x3fff != 0 counter drop']);
    const first = await push(server, writeModule(dir, 'nofrag_9_1.mjs', MiB));
    expect(first).toMatch(/datagrams that IP fragments never arrived: whole ones for 10 minutes, this push again at once/);
    expect(first).toMatch(/push finished: 1 done, 0 failed/);
    await device.waitFor(/Major = 9\nMinor = 1/);
    const dropped = dropCount('nofrag');
    expect(dropped).toBeGreaterThan(0);
    const pieces = (await countsOf(device)).pieces;
    expect(pieces).toBeGreaterThanOrEqual(piecesFor(MiB));

    // The next push goes in pieces from the start: no fragment dropped, no warning, no retry.
    const second = await push(server, writeModule(dir, 'nofrag_9_2.mjs', MiB, 9, 2));
    expect(second).toMatch(/push finished: 1 done, 0 failed/);
    expect(second).not.toMatch(/never arrived/);
    await device.waitFor(/Major = 9\nMinor = 2/);
    expect(dropCount('nofrag')).toBe(dropped);
    expect((await countsOf(device)).pieces).toBeGreaterThanOrEqual(pieces + piecesFor(MiB));
  });

  it.skipIf(!canDrop)('where fragments and full-size datagrams are dropped, the push goes in small chunks, and so do the next', async () => {
    const { dir, server, device } = await lan();
    // Fragments, and UDP datagrams of 1452 bytes (a piece; a small chunk's datagram is 1430) are
    // dropped as they reach the device: what a path with an MTU a little under 1500 would do.
    dropAtDevice('nobig', ['ip frag-off & 0x3fff != 0 counter drop', 'udp length 1460 counter drop']);
    const first = await push(server, writeModule(dir, 'nobig_9_1.mjs', MiB));
    expect(first).toMatch(/datagrams that IP fragments never arrived: whole ones for 10 minutes, this push again at once/);
    expect(first).toMatch(/chunks in pieces never arrived: small chunks from now on, this push again at once/);
    expect(first).toMatch(/push finished: 1 done, 0 failed/);
    await device.waitFor(/Major = 9\nMinor = 1/);
    const before = await countsOf(device);
    expect(before.chunkFrames).toBeGreaterThanOrEqual(Math.ceil(MiB / 1400));

    const second = await push(server, writeModule(dir, 'nobig_9_2.mjs', MiB, 9, 2));
    expect(second).toMatch(/push finished: 1 done, 0 failed/);
    expect(second).not.toMatch(/never arrived/);
    await device.waitFor(/Major = 9\nMinor = 2/);
    const after = await countsOf(device);
    expect(after.pieces).toBe(before.pieces);
    expect(after.chunkFrames - before.chunkFrames).toBeGreaterThanOrEqual(Math.ceil(MiB / 1400));
  });
});
