import { describe, expect, it } from 'vitest';
import { dropsIn, udpReceiveDrops } from '../../src/net/socket-drops.js';

// Lines as Linux writes /proc/net/udp and udp6 (header first; the last column is drops).
const UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 0100007F:2328 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 193293 2 00000000a954320d 17
  121: 00000000:D4EB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 193294 2 00000000a954320e 4
`;
const UDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 4990: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 194587 2 000000002986703b 3
`;

describe("a UDP socket's drops (datagrams the kernel had no room for)", () => {
  it('are read from the lines whose local port matches, summed over IPv4 and IPv6', () => {
    expect(dropsIn(UDP, 9000)).toBe(17);
    expect(dropsIn(UDP6, 9000)).toBe(3);
    expect(dropsIn(UDP, 0xd4eb)).toBe(4);
  });

  it('are unknown for a port no line has (nor from the header)', () => {
    expect(dropsIn(UDP, 9001)).toBeUndefined();
    expect(dropsIn('', 9000)).toBeUndefined();
  });

  it('are read for a socket of this process', async () => {
    const dgram = await import('node:dgram');
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    try {
      expect(udpReceiveDrops(socket.address().port)).toBe(0);
    } finally {
      socket.close();
    }
  });
});
