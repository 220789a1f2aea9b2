/**
 * The benchmark's relay, run inside the relay namespace (bench/netns.ts): a UdpProxy from
 * `--front HOST:PORT` to `--server HOST:PORT` (sending from `--back HOST`), losing, delaying and
 * reordering datagrams with a seeded random source (`--loss-per-frame`: the loss is each
 * 1500-byte frame's, so a datagram IP fragments into six is lost about six times as often).
 * Prints "relay ready" and runs until killed; SIGUSR1 prints how many datagrams each end has sent.
 *
 *   node relay.js --front 10.203.2.1:7000 --back 10.203.1.1 --server 10.203.1.2:9000 --loss 0.01 --delay 5 --reorder 0 --seed 1
 */
import { UdpProxy, lossyLink } from '../test/support/udp-proxy.js';
import { benchArgs } from './args.js';

const args = benchArgs('node dist-bench/bench/relay.js', 'The benchmark\'s relay between network namespaces (transfer.ts starts it).', {
  front: { text: undefined, help: 'HOST:PORT it listens on for the side that starts transfers (required)' },
  back: { text: undefined, help: 'HOST it sends to the server from (required)' },
  server: { text: undefined, help: 'HOST:PORT of the server (required)' },
  loss: { number: 0, help: 'share of datagrams lost, each way' },
  delay: { number: 0, help: 'ms each way' },
  reorder: { number: 0, help: 'share of datagrams held back (reordered)' },
  seed: { number: 1, help: 'the random source\'s seed' },
  'loss-per-frame': { flag: true, help: 'the loss is each 1500-byte frame\'s' },
});
const opt = (name: 'front' | 'back' | 'server'): string => {
  const v = args[name];
  if (v !== undefined) return v;
  console.error(`relay: --${name} is required (--help lists the options)`);
  process.exit(2);
};
const [frontHost, frontPort] = opt('front').split(':');
const [serverHost, serverPort] = opt('server').split(':');
const rule = lossyLink(args.seed, {
  loss: args.loss, delayMs: args.delay, reorder: args.reorder, perFrame: args['loss-per-frame'],
});
const proxy = await UdpProxy.start(Number(serverPort), rule, { front: frontHost!, frontPort: Number(frontPort), back: opt('back'), server: serverHost! });
process.stdout.write(`relay ready on ${frontHost}:${proxy.port}\n`);
// What each end has sent so far (for datagrams per MiB): on SIGUSR1, and when stopped.
const report = (): void => {
  process.stdout.write(`relay sent: to-client ${proxy.arrived['to-client']}, to-server ${proxy.arrived['to-server']}\n`);
};
process.on('SIGUSR1', report);
const stop = (): void => {
  report();
  void proxy.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
