/**
 * Stateless proof that a peer receives at the address it sends from (DTLS's HelloVerifyRequest,
 * WireGuard's cookie): HMAC(secret, address, port), cut to 16 bytes. The secret rotates every
 * COOKIE_LIFETIME_MS and the previous one is still accepted, so a cookie lives 1–2 lifetimes.
 * Checking one costs a hash and no state: the server does no key exchange and keeps nothing for
 * a sender until it has echoed a cookie.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { COOKIE_BYTES } from '../protocol/envelope.js';

export const COOKIE_LIFETIME_MS = 120_000;

export class CookieJar {
  private current: Uint8Array;
  private previous: Uint8Array;
  private rotatedAt: number;
  /** The last current-secret MAC computed, for the reply that usually follows a failed check:
   *  a forged INIT then costs one keyed hash, not two or three. */
  private last: { address: string; port: number; secret: Uint8Array; mac: Uint8Array } | undefined;

  constructor(private readonly random: (n: number) => Uint8Array, now: number) {
    this.current = random(32);
    this.previous = random(32);
    this.rotatedAt = now;
  }

  make(address: string, port: number, now: number): Uint8Array {
    this.rotate(now);
    return this.currentMac(address, port);
  }

  isValid(cookie: Uint8Array, address: string, port: number, now: number): boolean {
    this.rotate(now);
    // All zeros is what a client sends before it has a cookie: never valid, and no hash to say so.
    if (isZero(cookie)) return false;
    return equal(cookie, this.currentMac(address, port)) || equal(cookie, mac(this.previous, address, port));
  }

  private currentMac(address: string, port: number): Uint8Array {
    const l = this.last;
    if (l && l.port === port && l.address === address && l.secret === this.current) return l.mac;
    const m = mac(this.current, address, port);
    this.last = { address, port, secret: this.current, mac: m };
    return m;
  }

  private rotate(now: number): void {
    if (now - this.rotatedAt < COOKIE_LIFETIME_MS) return;
    // Long idle: both secrets are stale.
    this.previous = now - this.rotatedAt < 2 * COOKIE_LIFETIME_MS ? this.current : this.random(32);
    this.current = this.random(32);
    this.rotatedAt = now;
  }
}

function mac(secret: Uint8Array, address: string, port: number): Uint8Array {
  return createHmac('sha256', secret).update(`${address}\u0000${port}`).digest().subarray(0, COOKIE_BYTES);
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
