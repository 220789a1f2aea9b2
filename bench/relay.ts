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

const argv = process.argv.slice(2);
const opt = (name: string, fallback?: string): string => {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`relay: --${name} is required`);
  return v;
};
const [frontHost, frontPort] = opt('front').split(':');
const [serverHost, serverPort] = opt('server').split(':');
const rule = lossyLink(Number(opt('seed', '1')), {
  loss: Number(opt('loss', '0')), delayMs: Number(opt('delay', '0')), reorder: Number(opt('reorder', '0')), perFrame: argv.includes('--loss-per-frame'),
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
