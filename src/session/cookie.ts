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

  constructor(private readonly random: (n: number) => Uint8Array, now: number) {
    this.current = random(32);
    this.previous = random(32);
    this.rotatedAt = now;
  }

  make(address: string, port: number, now: number): Uint8Array {
    this.rotate(now);
    return mac(this.current, address, port);
  }

  isValid(cookie: Uint8Array, address: string, port: number, now: number): boolean {
    this.rotate(now);
    return equal(cookie, mac(this.current, address, port)) || equal(cookie, mac(this.previous, address, port));
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

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
