/**
 * Which frame counters of a session have been seen (RFC 6479's bitmap window): a counter is new
 * if it is above the highest seen, or within WINDOW below it and not yet marked. A replayed
 * datagram, a network duplicate, or one delayed past the window is refused.
 *
 * Check before decrypting (cheap), mark only after the tag verified: a forged counter must not
 * move the window.
 */
export const REPLAY_WINDOW = 4096;
const WORDS = REPLAY_WINDOW / 32;

export class ReplayWindow {
  private top = -1;
  private readonly bits = new Uint32Array(WORDS);

  isFresh(counter: number): boolean {
    if (counter > this.top) return true;
    if (this.top - counter >= REPLAY_WINDOW - 32) return false; // the top word is shared: keep a word's margin
    const bit = counter % REPLAY_WINDOW;
    return ((this.bits[bit >>> 5]! >>> (bit & 31)) & 1) === 0;
  }

  mark(counter: number): void {
    if (counter > this.top) {
      const oldWord = Math.floor(this.top / 32);
      const newWord = Math.floor(counter / 32);
      // Clear the words the window slides over (all of them after a big jump).
      const steps = Math.min(newWord - oldWord, WORDS);
      for (let i = 1; i <= steps; i++) this.bits[(oldWord + i) % WORDS] = 0;
      this.top = counter;
    }
    const bit = counter % REPLAY_WINDOW;
    this.bits[bit >>> 5]! |= 1 << (bit & 31);
  }
}
