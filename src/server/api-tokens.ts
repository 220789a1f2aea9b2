/**
 * API tokens for the HTTP API: made at the console (`token create NAME`), shown once, kept only as
 * their SHA-256 in the store (a copy of the database gives nobody access), revoked by name. A
 * token is `nxt_` and 32 random bytes in base64url.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { NxtError } from '../errors.js';
import type { Store } from '../store/store.js';

export interface TokenRecord {
  readonly name: string;
  readonly sha256: string;
  readonly createdAt: string;
}

const digest = (token: string): Buffer => createHash('sha256').update(token).digest();

export class ApiTokens {
  private tokens: TokenRecord[];

  /** `store` undefined: kept in memory only (tests). */
  constructor(private readonly store: Store | undefined, private readonly random: (n: number) => Uint8Array, saved: readonly TokenRecord[] = []) {
    this.tokens = [...saved];
  }

  static async open(store: Store, random: (n: number) => Uint8Array): Promise<ApiTokens> {
    return new ApiTokens(store, random, await store.tokens());
  }

  list(): readonly TokenRecord[] { return this.tokens; }

  /** A new token named `name`; the only time it is seen whole. Saved before it counts: a token
   *  the store did not take was never made. */
  async create(name: string, wallNow: Date): Promise<string> {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new NxtError('usage', 'a token name is 1-64 letters, digits, ".", "_" or "-"');
    if (this.tokens.some((t) => t.name === name)) throw new NxtError('usage', `a token named "${name}" exists: revoke it first, or choose another name`);
    const token = `nxt_${Buffer.from(this.random(32)).toString('base64url')}`;
    const record: TokenRecord = { name, sha256: digest(token).toString('hex'), createdAt: wallNow.toISOString() };
    await this.store?.addToken(record);
    this.tokens = [...this.tokens, record];
    return token;
  }

  /** Revoked once saved (until then, and if that fails, it still works). */
  async revoke(name: string): Promise<void> {
    if (!this.tokens.some((t) => t.name === name)) throw new NxtError('no-such-token', `no token named "${name}" (token list)`);
    await this.store?.deleteToken(name);
    this.tokens = this.tokens.filter((t) => t.name !== name);
  }

  /** The name of the token `presented` is, or undefined. Compared in constant time. */
  check(presented: string): string | undefined {
    const d = digest(presented);
    let name: string | undefined;
    for (const t of this.tokens) if (timingSafeEqual(d, Buffer.from(t.sha256, 'hex'))) name = t.name;
    return name;
  }
}
