/**
 * Datagrams bigger than the interface carries whole, which IP cuts into fragments: on a directly
 * attached LAN (no router between, so nothing drops fragments by policy) they are the cheapest way
 * to move a release. Every datagram costs both ends a system call, a receive, an authentication
 * and a write; one large chunk per datagram takes a sixth of the datagrams of 1400-byte ones.
 * Measured on this project's testbed (10 devices on a bridge, MTU 1500): a unicast push to ten
 * devices in about half the time, with half the CPU on either side (docs/benchmarks.md).
 *
 * The cost: a lost fragment loses its whole datagram, so where a link loses frames, fragmented
 * datagrams are lost about six times as often. FragmentPolicy decides, per device, from what
 * its pushes saw. Whole datagrams for HOLD_MS (RFC 8899's PMTU_RAISE_TIMER: the path may have
 * changed by then) when a push that sent fragments
 * - got nothing through (something on the way drops fragments: the server sends it again at
 *   once, whole), or
 * - had more than a fifth of its chunks sent again (loss).
 * A push that resends more than half of what it sent in fragmented datagrams gives up on them at
 * once (server.ts: GIVE_UP_*), as a lossy one at its end, and goes again whole: on a link losing
 * a fifth of its frames six-fragment datagrams are three-quarters lost, and such a push took 34 s
 * for 16 MiB instead of about one.
 * Pieces (PIECE frames: the large chunk cut by nxt into datagrams that travel whole) lose like
 * fragments and are judged the same way, with one difference: fragments that never arrived at all
 * (a firewall that drops them) take away fragments only, and the push goes again in pieces.
 * Loss is not always the fragments' doing: the next push, sent whole, says. If it loses at least
 * half as much, the loss is the link's (it loses datagrams, not frames) and fragments, which
 * then cost nothing more, come back for HOLD_MS, during which loss alone does not take them away.
 * Pure: time is an argument.
 */
import { CHUNKS_HEADER_BYTES, chunkEntryBytes, PIECE_HEADER_BYTES, TAG_BYTES } from '../protocol/envelope.js';
import { MAX_DATAGRAM_BYTES } from '../protocol/messages.js';

/**
 * The large chunk: sealed, with its entry and the CHUNKS header, it fills six fragments on a
 * 1500-byte LAN in IPv4 (1480 bytes of payload each) and in IPv6 (1448: 1500 less the IPv6 and
 * fragment headers, rounded down to 8): 6 × 1448 = 8688 bytes behind the IP header, of which 8
 * are UDP's. An 8 KiB chunk left the sixth fragment half empty: 6% more datagrams, frames, seals
 * and opens for the same bytes. A jumbo frame (MTU 9000) carries the datagram whole.
 */
export const LARGE_CHUNK_BYTES = 6 * 1448 - 8 - CHUNKS_HEADER_BYTES - chunkEntryBytes(0);
/** One sealed large chunk and the CHUNKS header: six fragments on a 1500-byte LAN. */
export const FRAGMENTED_DATAGRAM = CHUNKS_HEADER_BYTES + chunkEntryBytes(LARGE_CHUNK_BYTES);

/**
 * The large chunk for a path that takes it in pieces (PIECE frames: a router on the way, or
 * `--max-datagram` below one large chunk): sealed, it fills six pieces of datagrams that never
 * fragment (1452 bytes). The same loss as fragments, cut by nxt instead of IP, so anything that
 * passes whole datagrams passes them; the device still opens, writes and acknowledges a sixth
 * as often as with 1400-byte chunks, and the server seals a sixth as many.
 */
export const PIECE_CHUNK_BYTES = 6 * (MAX_DATAGRAM_BYTES - PIECE_HEADER_BYTES) - TAG_BYTES;

export interface FragmentPolicyOptions {
  /** How long a decision holds. */
  readonly holdMs: number;
  /** Resent chunks, as a share of all, above which fragments may be the cause. */
  readonly maxResentShare: number;
  /** Pushes of fewer chunks say too little about loss to decide anything. */
  readonly minChunks: number;
  /** Devices remembered at most (the oldest is dropped first). */
  readonly maxDevices: number;
}

export const DEFAULT_FRAGMENT_POLICY: FragmentPolicyOptions = { holdMs: 600_000, maxResentShare: 0.2, minChunks: 256, maxDevices: 200_000 };

/** How a unicast push ended. */
export interface PushOutcome {
  /** Its datagrams were bigger than the interface carries whole. */
  readonly fragmented: boolean;
  readonly chunks: number;
  readonly acked: number;
  /** Chunks sent again (not counting those the device then reported it already held). */
  readonly resent: number;
  /** The device stopped answering, or progress stopped (the sender's peer timeout). */
  readonly timedOut: boolean;
  /** Its chunks went in pieces rather than in datagrams that IP fragments. */
  readonly pieces?: boolean;
}

/** What a push changed: fragments taken away (`blocked`, `lossy`), or given back (`link-loss`). */
export interface FragmentDecision {
  readonly change: 'blocked' | 'lossy' | 'link-loss';
  /** Share of chunks resent by this push and, for `link-loss`, by the fragmented one before it. */
  readonly share: number;
  readonly fragmentedShare?: number;
}

interface DeviceMark {
  wholeUntil?: number;
  /** Only datagrams that IP fragments were taken away (they never arrived): pieces may go. */
  fragmentsOnly?: boolean;
  /** Loss alone takes nothing away until then (it was found to be the link's). */
  toleratedUntil?: number;
  /** The resent share of the fragmented push that took fragments away for loss. */
  fragmentedShare?: number;
}

export class FragmentPolicy {
  private readonly marks = new Map<string, DeviceMark>();

  constructor(private readonly options: FragmentPolicyOptions = DEFAULT_FRAGMENT_POLICY) {}

  /** May datagrams to `device` be bigger than its interface carries whole (or, `pieces`, may
   *  its large chunks go in pieces)? */
  allowed(device: string, now: number, pieces = false): boolean {
    const mark = this.marks.get(device);
    if (mark?.wholeUntil === undefined || now >= mark.wholeUntil) return true;
    return pieces && mark.fragmentsOnly === true;
  }

  /** Whether loss alone takes nothing away from `device` now (its link was found to lose
   *  datagrams whole or fragmented alike). */
  tolerates(device: string, now: number): boolean {
    const until = this.marks.get(device)?.toleratedUntil;
    return until !== undefined && now < until;
  }

  /** A unicast push to `device` ended: what it changed, if anything. */
  pushEnded(device: string, o: PushOutcome, now: number): FragmentDecision | undefined {
    const { holdMs, maxResentShare, minChunks } = this.options;
    const share = o.chunks > 0 ? o.resent / o.chunks : 0;
    const mark = this.marks.get(device);
    if (o.fragmented) {
      if (o.timedOut && o.acked === 0) {
        this.set(device, { wholeUntil: now + holdMs, fragmentsOnly: o.pieces !== true });
        return { change: 'blocked', share };
      }
      const tolerated = mark?.toleratedUntil !== undefined && now < mark.toleratedUntil;
      if (o.chunks >= minChunks && share > maxResentShare && !tolerated) {
        this.set(device, { wholeUntil: now + holdMs, fragmentedShare: share });
        return { change: 'lossy', share };
      }
      return undefined;
    }
    const fragmentedShare = mark?.fragmentedShare;
    if (fragmentedShare === undefined || o.chunks < minChunks) return undefined;
    if (share >= fragmentedShare / 2) {
      this.set(device, { toleratedUntil: now + holdMs });
      return { change: 'link-loss', share, fragmentedShare };
    }
    // Whole datagrams lost far less: the fragments were the cause; the hold stands.
    mark!.fragmentedShare = undefined;
    return undefined;
  }

  private set(device: string, mark: DeviceMark): void {
    this.marks.delete(device);
    this.marks.set(device, mark);
    if (this.marks.size > this.options.maxDevices) this.marks.delete(this.marks.keys().next().value!);
  }
}
