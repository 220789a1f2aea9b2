/**
 * An in-memory network for the secure channel's unit tests: endpoints queue what they send, and
 * flush() delivers it (in order, until nothing is left), so a test controls every datagram and can
 * capture, alter, replay or re-address it. Time is a FakeClock the test moves.
 */
import type { Endpoint, Peer } from '../../src/net/endpoint.js';
import type { Clock } from '../../src/util/clock.js';

export class FakeClock implements Clock {
  constructor(public t = 1_000_000) {}
  now(): number { return this.t; }
}

export interface Sent {
  readonly data: Buffer;
  readonly from: Peer;
  readonly to: Peer;
}

export class FakeNetwork {
  readonly queue: Sent[] = [];
  /** Every datagram ever sent, for capture. */
  readonly log: Sent[] = [];
  private readonly endpoints = new Map<string, FakeEndpoint>();
  /** Decide per datagram: deliver it (true) or drop it. */
  filter: (s: Sent) => boolean = () => true;

  endpoint(address: string, port: number): FakeEndpoint {
    const e = new FakeEndpoint(this, { address, port });
    this.endpoints.set(key(e.self), e);
    return e;
  }

  /** @internal */
  enqueue(s: Sent): void {
    this.queue.push(s);
    this.log.push(s);
  }

  /** Deliver `data` to `to` as if sent from `from` (an attacker, or a replay). */
  inject(data: Uint8Array, from: Peer, to: Peer): void {
    this.endpoints.get(key(to))?.receive(Buffer.from(data), from);
  }

  flush(): void {
    for (let n = 0; this.queue.length > 0; n++) {
      if (n > 10_000) throw new Error('the fake network never went quiet');
      const s = this.queue.shift()!;
      if (this.filter(s)) this.inject(s.data, s.from, s.to);
    }
  }
}

export class FakeEndpoint implements Endpoint {
  private handler: (data: Buffer, from: Peer) => void = () => undefined;

  constructor(private readonly net: FakeNetwork, readonly self: Peer) {}

  get port(): number { return this.self.port; }
  send(data: Uint8Array, to: Peer): void { this.net.enqueue({ data: Buffer.from(data), from: this.self, to }); }
  sendv(parts: readonly Uint8Array[], to: Peer): void { this.send(Buffer.concat(parts), to); }
  sendQueueCount(): number { return 0; }
  onDatagram(handler: (data: Buffer, from: Peer) => void): void { this.handler = handler; }
  receive(data: Buffer, from: Peer): void { this.handler(data, from); }
  close(): Promise<void> { return Promise.resolve(); }
}

function key(p: Peer): string {
  return `${p.address}|${p.port}`;
}
