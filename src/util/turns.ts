/**
 * Runs CPU-bound steps one at a time, in the order asked, letting the event loop turn after every
 * `every` of them: a push to many devices signs a manifest for each (tweetnacl, ~4 ms apiece), and
 * 500 in one go held the server's thread for 2.2 s: no renewal, handshake, ACK or console command
 * was read meanwhile. A step's error goes to its caller only.
 */
export class Turns {
  private chain: Promise<unknown> = Promise.resolve();
  private sinceTurn = 0;

  constructor(private readonly every: number) {}

  run<T>(step: () => T): Promise<T> {
    const next = this.chain.then(async () => {
      if (++this.sinceTurn > this.every) {
        this.sinceTurn = 1;
        await new Promise((resolve) => setImmediate(resolve));
      }
      return step();
    });
    this.chain = next.catch(() => undefined);
    return next;
  }
}
