/**
 * How many datagrams the kernel dropped for a UDP socket because its receive buffer was full
 * (Linux: the `drops` column of /proc/self/net/udp and udp6, this process's network namespace).
 * A server that drops is not reading fast enough (short of CPU, or a buffer capped low by
 * net.core.rmem_max): a device it "did not hear" may have spoken. Undefined where the system
 * does not say.
 */
import { readFileSync } from 'node:fs';

/** The drops counted for sockets bound to local `port` (a dual-stack socket is one udp6 line). */
export function udpReceiveDrops(port: number): number | undefined {
  let found = false;
  let drops = 0;
  for (const table of ['/proc/self/net/udp', '/proc/self/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'latin1');
    } catch {
      continue;
    }
    const n = dropsIn(text, port);
    if (n !== undefined) {
      found = true;
      drops += n;
    }
  }
  return found ? drops : undefined;
}

/** The drops of the lines of one /proc/net/udp table whose local port is `port`. Exported for
 *  the tests: a table's text is all it needs. */
export function dropsIn(table: string, port: number): number | undefined {
  const wanted = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let found = false;
  let drops = 0;
  for (const line of table.split('\n')) {
    const fields = line.trim().split(/\s+/);
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
    if (fields.length < 13 || !fields[1]!.endsWith(wanted)) continue;
    const n = Number(fields[12]);
    if (!Number.isInteger(n)) continue;
    found = true;
    drops += n;
  }
  return found ? drops : undefined;
}
