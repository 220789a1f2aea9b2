/**
 * An enrolled device that says what a test tells it to: the real secure channel (its own X25519
 * key, the handshake, sealed frames, the test enrollment token), no agent behind it. For the
 * checks of what a compromised device can and cannot do to its server.
 */
import { randomBytes } from 'node:crypto';
import { openUdpEndpoint } from '../../src/net/endpoint.js';
import { decodeOrUndefined, encode, UpdateResult, UpdateState, type Message, type RegisterMessage } from '../../src/protocol/messages.js';
import { ClientChannel } from '../../src/session/client-channel.js';
import { clientIdOf, keyPairFromSecret } from '../../src/session/handshake.js';
import { readIdentityPublic } from '../../src/session/identity.js';
import { systemClock } from '../../src/util/clock.js';
import { TEST_ENROLL_TOKEN } from './processes.js';

export interface RogueDevice {
  readonly clientId: Uint8Array;
  /** Every message the server sent it, in order. */
  readonly heard: Message[];
  send(message: Message): void;
  /** Bytes as they are, sealed: a message cut short or with bits flipped, say. */
  sendBytes(bytes: Uint8Array): void;
  /** Resolves with the first message from now on (or heard already, after `from`) that `match` accepts. */
  waitFor<T extends Message>(match: (m: Message) => m is T, from?: number): Promise<T>;
  register(fields?: Partial<RegisterMessage>): void;
  close(): Promise<void>;
}

/** A device with a new key, its session with the server on `port` up (whose identity key is at
 *  `identityPub`). */
export async function rogueDevice(port: number, identityPub: string): Promise<RogueDevice> {
  const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
  const endpoint = await openUdpEndpoint({ port: 0, host: '127.0.0.1' });
  const identity = keyPairFromSecret(random(32));
  const clientId = clientIdOf(identity.publicKey);
  let stamp = Date.now();
  const channel = new ClientChannel({
    endpoint, server: { address: '127.0.0.1', port }, serverKey: readIdentityPublic(identityPub), identity, clock: systemClock, random, nextStamp: () => ++stamp,
  });
  const heard: Message[] = [];
  const waiters = new Set<() => void>();
  channel.onDatagram((data) => {
    const m = decodeOrUndefined(data);
    if (m === undefined) return;
    heard.push(m);
    for (const w of [...waiters]) w();
  });
  await new Promise<void>((resolve) => { channel.once('established', () => resolve()); channel.connect(); });
  let seq = 0;
  return {
    clientId, heard,
    send: (message) => channel.send(encode(message)),
    sendBytes: (bytes) => channel.send(bytes),
    waitFor: <T extends Message>(match: (m: Message) => m is T, from = heard.length) => new Promise<T>((resolve) => {
      const look = (): void => {
        const hit = heard.slice(from).find(match);
        if (hit === undefined) return;
        waiters.delete(look);
        resolve(hit);
      };
      waiters.add(look);
      look();
    }),
    register: (fields = {}) => channel.send(encode({
      type: 'register', clientId, seq: ++seq, version: { major: 1, minor: 0, patch: 0 }, product: { major: 5, minor: 6, productName: 'rogue' },
      enrollToken: TEST_ENROLL_TOKEN, inventory: '{"hostname":"rogue"}', updateState: UpdateState.idle, updateResult: UpdateResult.initial, ...fields,
    })),
    close: () => channel.close(),
  };
}
