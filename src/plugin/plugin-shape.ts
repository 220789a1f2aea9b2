/**
 * What a plugin module must look like: an ES module exporting (as default, or as
 * `productVersion`) a function that returns { major, minor, productName }.
 */
import { NxtError, errorMessage } from '../errors.js';
import { MAX_PRODUCT_NAME_BYTES, type ProductInfo } from '../protocol/messages.js';

/** A module whose top-level code has not settled by then is not activated: a buggy module (a
 *  top-level await that never resolves) must not wedge the updater. Large modules take about a
 *  second per 100 MB to decode and compile here. */
export const LOAD_TIMEOUT_MS = 30_000;

export async function loadPlugin(url: string, timeoutMs = LOAD_TIMEOUT_MS): Promise<ProductInfo> {
  let mod: Record<string, unknown>;
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`it did not finish loading within ${timeoutMs} ms`)), timeoutMs);
    });
    mod = (await Promise.race([import(url), deadline])) as Record<string, unknown>;
  } catch (err) {
    throw new NxtError('load-failed', `module failed to load: ${errorMessage(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
  return checkModuleExports(mod);
}

/** The product version an imported module reports, checked: its version function must exist,
 *  not throw, and return the right shape. */
export async function checkModuleExports(mod: Record<string, unknown>): Promise<ProductInfo> {
  const fn = typeof mod.default === 'function' ? mod.default : mod.productVersion;
  if (typeof fn !== 'function') {
    throw new NxtError('bad-shape', 'module exports no function (expected a default export or "productVersion")');
  }
  let info: unknown;
  try {
    info = await (fn as () => unknown)();
  } catch (err) {
    throw new NxtError('load-failed', `module's version function threw: ${errorMessage(err)}`, { cause: err });
  }
  return checkProductInfo(info);
}

export function checkProductInfo(value: unknown): ProductInfo {
  const o = value as Record<string, unknown> | null;
  const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
  if (typeof o !== 'object' || o === null || !isCount(o.major) || !isCount(o.minor)
    || typeof o.productName !== 'string' || o.productName.length === 0
    || Buffer.byteLength(o.productName) > MAX_PRODUCT_NAME_BYTES) {
    throw new NxtError('bad-shape', 'version function must return { major, minor, productName } (non-negative integers, a name of 1..64 bytes)');
  }
  return { major: o.major, minor: o.minor, productName: o.productName };
}

export function formatProductVersion(p: ProductInfo): string {
  return `product version :\nMajor = ${p.major}\nMinor = ${p.minor}\nproductName = ${p.productName}`;
}
