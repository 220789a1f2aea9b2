/**
 * Several nodes: a push typed at node A to devices registered at node B, against the same push
 * on one node, both on a real PostgreSQL started here (Debian's postgresql package), in one run.
 * From typing `push` to "push finished" (every device has activated it). Real server and client
 * processes on loopback; bounded in count and time. Not a test: it prints a table.
 *
 *   npm run bench:nodes [-- --devices 10 --size-mib 4 --runs 3]
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startClient, startServer, stopAll, tempDir, type Proc } from '../test/support/processes.js';
import { writeModule } from '../test/support/modules.js';
import { havePostgres, startPostgres } from '../test/support/postgres.js';
import { benchArgs } from './args.js';

const args = benchArgs('npm run bench:nodes --', 'A push typed at one node to devices held by another, beside the same push on one node, on a PostgreSQL started here.', {
  devices: { number: 10, help: 'devices' },
  'size-mib': { number: 4, help: 'the module\'s size in MiB' },
  runs: { number: 3, help: 'pushes each way' },
});
const DEVICES = args.devices;
const SIZE = args['size-mib'] * 1024 * 1024;
const RUNS = args.runs;

if (!havePostgres) {
  console.log('bench:nodes needs PostgreSQL (apt-get install postgresql): skipped');
  process.exit(0);
}
const pg = await startPostgres();
const work = tempDir('nxt-bench-nodes-');
const KEYS = ['release.key', 'release.pub', 'identity.key', 'identity.pub'];
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Nodes on a new database; the devices at the last node; the push is typed at the first. */
async function setup(name: string, nodes: number): Promise<{ typeAt: Proc; devices: Proc[] }> {
  const url = pg.newDatabase(name);
  const dir = join(work, name);
  const servers: { proc: Proc; port: number }[] = [];
  for (let i = 0; i < nodes; i++) {
    const state = join(dir, `node${i}`);
    if (i > 0) {
      mkdirSync(state, { recursive: true });
      for (const f of KEYS) copyFileSync(join(dir, 'node0', f), join(state, f));
    }
    servers.push(await startServer(state, ['--node-name', `n${i}`], { NXT_DATABASE: url }));
  }
  const holder = servers[servers.length - 1]!;
  const devices = await Promise.all(Array.from({ length: DEVICES }, (_, i) => startClient(`${name}-d${i}`, holder.port, join(dir, `d${i}`), join(dir, 'node0/release.pub'))));
  // The node the push is typed at sees them all (the other nodes' devices within 2 s).
  const typeAt = servers[0]!.proc;
  for (const until = Date.now() + 30_000; ;) {
    const listed = await typeAt.run('clients --json', /\]\n/);
    if ((listed.match(/"online":true/g) ?? []).length >= DEVICES) break;
    if (Date.now() > until) throw new Error(`${name}: the devices never showed at the first node`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { typeAt, devices };
}

async function timePush(at: Proc, file: string): Promise<number> {
  const t = performance.now();
  const from = at.type(`push ${file}`);
  const m = await at.waitFor(/push finished: (\d+) done, (\d+) failed.*\n/, 120_000, from);
  const ms = performance.now() - t;
  if (Number(m[1]) !== DEVICES) throw new Error(`push finished with ${m[0].trim()}`);
  return ms;
}

const one = await setup('one', 1);
const two = await setup('two', 2);
const times = { one: [] as number[], two: [] as number[] };
for (let run = 0; run < RUNS; run++) {
  // Alternating, each run a new version of the same size: same work for both, noise shared.
  times.one.push(await timePush(one.typeAt, writeModule(work, `one_${10 + run}_0.mjs`, SIZE, 10 + run, 0)));
  times.two.push(await timePush(two.typeAt, writeModule(work, `two_${10 + run}_0.mjs`, SIZE, 10 + run, 0)));
}
const [a, b] = [median(times.one), median(times.two)];
console.log(`\n## A push to ${DEVICES} devices, ${SIZE / 1024 / 1024} MiB, typed at node A (medians of ${RUNS})\n`);
console.log('| case | typing to all activated | ratio |');
console.log('|---|---|---|');
console.log(`| one node, devices registered at it | ${(a / 1000).toFixed(2)} s | 1.00 |`);
console.log(`| two nodes, devices registered at node B | ${(b / 1000).toFixed(2)} s | ${(b / a).toFixed(2)} (target ≤ 1.2) |`);
await stopAll();
pg.stop();
process.exit(0);
