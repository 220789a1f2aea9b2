/**
 * One direction-keyed session as both ends hold it: seal outgoing messages with the next counter,
 * open incoming frames once each. The channels (client-channel.ts, server-channel.ts) decide
 * which session a frame belongs to; this decides whether it is genuine and new.
 */
import { SEALED_HEADER_BYTES, SEALED_OVERHEAD_BYTES, writeSealedHeader, type SealedFrame } from '../protocol/envelope.js';
import type { SessionKeys } from './handshake.js';
import { ReplayWindow } from './replay-window.js';

export class SealedSession {
  private sendCounter = 0;
  private readonly window = new ReplayWindow();

  constructor(
    /** Our index: the peer puts it in every frame it sends us. */
    readonly ourIndex: number,
    /** The peer's index, put in every frame we send. */
    readonly theirIndex: number,
    private readonly keys: SessionKeys,
    readonly createdAt: number,
  ) {}

  seal(message: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(message.length + SEALED_OVERHEAD_BYTES);
    writeSealedHeader(out, this.theirIndex, this.sendCounter);
    this.keys.send.sealInto(this.sendCounter++, out.subarray(0, SEALED_HEADER_BYTES), message, out, SEALED_HEADER_BYTES);
    return out;
  }

  /** The message, or why the frame was dropped. The window moves only for genuine frames. */
  open(frame: SealedFrame): Buffer | 'replayed' | 'bad-tag' {
    if (!this.window.isFresh(frame.counter)) return 'replayed';
    const plain = this.keys.receive.open(frame.counter, frame.header, frame.ciphertext);
    if (!plain) return 'bad-tag';
    this.window.mark(frame.counter);
    return plain;
  }
}
