/**
 * What a plugin module must look like: an ES module exporting (as default, or as
 * `productVersion`) a function that returns { major, minor, productName }.
 */
import { NxtError, errorMessage } from '../errors.js';
import { MAX_PRODUCT_NAME_BYTES, type ProductInfo } from '../protocol/messages.js';

export async function loadPlugin(url: string): Promise<ProductInfo> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new NxtError('load-failed', `module failed to load: ${errorMessage(err)}`, { cause: err });
  }
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
