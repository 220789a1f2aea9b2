/**
 * What the secure channel costs per datagram and per handshake, beside the alternatives the
 * security issue names: AES-256-GCM and ChaCha20-Poly1305 from node:crypto, tweetnacl's secretbox
 * (XSalsa20-Poly1305). Not a test: it prints a table.
 *
 *   npm run bench:crypto
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import { AeadKey } from '../src/session/aead.js';
import { createInit, createResponse, dh, keyPairFromSecret, readInit, readResponse } from '../src/session/handshake.js';
import { decodeEnvelope } from '../src/protocol/envelope.js';
import { benchArgs } from './args.js';

benchArgs('npm run bench:crypto --', 'What the secure channel costs per datagram and per handshake, beside the alternatives; no options.', {});

const PAYLOAD = randomBytes(1412); // a full DATA message
const AAD = randomBytes(16);
const N = 100_000;

function perOp(n: number, f: (i: number) => void): number {
  for (let i = 0; i < Math.min(n, 2000); i++) f(i); // warm up
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f(i);
  return Number(process.hrtime.bigint() - t) / n / 1000; // µs
}

function nodeAead(alg: 'aes-256-gcm' | 'chacha20-poly1305'): { seal: number; open: number } {
  const key = createSecretKey(randomBytes(32));
  const nonce = (i: number): Buffer => { const b = Buffer.alloc(12); b.writeUInt32BE(i, 8); return b; };
  const seal = (i: number): Buffer => {
    const c = createCipheriv(alg as 'aes-256-gcm', key, nonce(i), { authTagLength: 16 });
    c.setAAD(AAD);
    return Buffer.concat([c.update(PAYLOAD), c.final(), c.getAuthTag()]);
  };
  const sealed = seal(1);
  return {
    seal: perOp(N, seal),
    open: perOp(N, () => {
      const d = createDecipheriv(alg as 'aes-256-gcm', key, nonce(1), { authTagLength: 16 });
      d.setAAD(AAD);
      d.setAuthTag(sealed.subarray(sealed.length - 16));
      d.update(sealed.subarray(0, sealed.length - 16));
      d.final();
    }),
  };
}

const rows: [string, number, number][] = [];
const ours = new AeadKey(randomBytes(32));
const oursSealed = ours.seal(1, AAD, PAYLOAD);
rows.push(['nxt (AeadKey: ChaCha20-Poly1305)', perOp(N, (i) => ours.seal(i, AAD, PAYLOAD)), perOp(N, () => ours.open(1, AAD, oursSealed))]);
for (const alg of ['chacha20-poly1305', 'aes-256-gcm'] as const) {
  const r = nodeAead(alg);
  rows.push([`node:crypto ${alg}`, r.seal, r.open]);
}
{
  const key = randomBytes(32);
  const nonce = randomBytes(24);
  const boxed = nacl.secretbox(PAYLOAD, nonce, key);
  rows.push(['tweetnacl secretbox', perOp(N / 10, () => nacl.secretbox(PAYLOAD, nonce, key)), perOp(N / 10, () => nacl.secretbox.open(boxed, nonce, key))]);
}
const base = rows[0]![1];
console.log(`\n### Per-datagram cost (${PAYLOAD.length}-byte message, µs per operation; one run, rows move ±30% between runs)\n`);
console.log('| cipher | seal µs | open µs | seal vs nxt |');
console.log('|---|---|---|---|');
for (const [name, seal, open] of rows) console.log(`| ${name} | ${seal.toFixed(2)} | ${open.toFixed(2)} | ${(seal / base).toFixed(2)}× |`);

// One full handshake, both sides, as the channels do it.
const server = keyPairFromSecret(randomBytes(32));
const client = keyPairFromSecret(randomBytes(32));
const handshake = (): void => {
  const { bytes, initiation } = createInit({ clientStatic: client, serverPublic: server.publicKey, senderIndex: 1, cookie: new Uint8Array(16), stamp: Date.now(), ephemeral: keyPairFromSecret(randomBytes(32)) });
  const init = decodeEnvelope(bytes);
  if (init.type !== 'init') throw new Error('not an INIT');
  const accepted = readInit(server, init, () => undefined);
  const response = decodeEnvelope(createResponse(accepted, 2, keyPairFromSecret(randomBytes(32))).bytes);
  if (response.type !== 'response') throw new Error('not a RESPONSE');
  readResponse(initiation, client, response);
};
const hs = perOp(100, handshake) / 1000;
const dhNacl = perOp(200, () => nacl.scalarMult(client.secretKey, server.publicKey)) / 1000;
const dhNxt = perOp(2000, () => dh(client.secretKey, server.publicKey)) / 1000;
console.log(`\n### Handshake\n`);
console.log('| operation | ms |');
console.log('|---|---|');
console.log(`| one X25519, nxt (node:crypto, the server's key object made once) | ${dhNxt.toFixed(3)} |`);
console.log(`| one X25519, tweetnacl scalarMult (what nxt used before) | ${dhNacl.toFixed(2)} |`);
console.log(`| full handshake, client and server together (10 X25519) | ${hs.toFixed(2)} |`);
