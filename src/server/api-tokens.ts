/**
 * API tokens for the HTTP API: made at the console (`token create NAME`), shown once, kept only as
 * their SHA-256 in `api-tokens.json` in the state dir (a copy of the file gives nobody access),
 * revoked by name. A token is `nxt_` and 32 random bytes in base64url.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { NxtError } from '../errors.js';
import { readStateFile, writeFileAtomic } from '../util/atomic-file.js';

const FILE = 'api-tokens.json';

export interface TokenRecord {
  readonly name: string;
  readonly sha256: string;
  readonly createdAt: string;
}

const digest = (token: string): Buffer => createHash('sha256').update(token).digest();

export class ApiTokens {
  private tokens: TokenRecord[];
  private readonly path: string;

  constructor(stateDir: string, private readonly random: (n: number) => Uint8Array) {
    this.path = join(stateDir, FILE);
    this.tokens = readStateFile(this.path, (text) => (JSON.parse(text) as { tokens: TokenRecord[] }).tokens) ?? [];
  }

  list(): readonly TokenRecord[] { return this.tokens; }

  /** A new token named `name`; the only time it is seen whole. */
  create(name: string, wallNow: Date): string {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new NxtError('usage', 'a token name is 1-64 letters, digits, ".", "_" or "-"');
    if (this.tokens.some((t) => t.name === name)) throw new NxtError('usage', `a token named "${name}" exists: revoke it first, or choose another name`);
    const token = `nxt_${Buffer.from(this.random(32)).toString('base64url')}`;
    this.save([...this.tokens, { name, sha256: digest(token).toString('hex'), createdAt: wallNow.toISOString() }]);
    return token;
  }

  revoke(name: string): void {
    if (!this.tokens.some((t) => t.name === name)) throw new NxtError('no-such-token', `no token named "${name}" (token list)`);
    this.save(this.tokens.filter((t) => t.name !== name));
  }

  /** The name of the token `presented` is, or undefined. Compared in constant time. */
  check(presented: string): string | undefined {
    const d = digest(presented);
    let name: string | undefined;
    for (const t of this.tokens) if (timingSafeEqual(d, Buffer.from(t.sha256, 'hex'))) name = t.name;
    return name;
  }

  /** Saved before it counts: a token the disk did not take was never made (nor revoked). */
  private save(tokens: TokenRecord[]): void {
    writeFileAtomic(this.path, `${JSON.stringify({ version: 1, tokens }, null, 1)}\n`);
    this.tokens = tokens;
  }
}
