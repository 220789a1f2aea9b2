/**
 * `clients --where 'disk.dataFreeBytes<1GiB'`: conditions on the fields of each device's latest
 * status report (job report), as a pure function. A condition is a dotted path into the report,
 * an operator (< <= > >= = !=) and a value: a number (with an optional KiB/MiB/GiB/TiB or k/M/G
 * unit) compared as a number, else text compared as text. Several are comma-separated, all must
 * hold; a device without a report, or without the field, does not match.
 */
import { NxtError } from '../errors.js';

export interface Condition {
  readonly path: readonly string[];
  readonly op: '<' | '<=' | '>' | '>=' | '=' | '!=';
  readonly value: number | string;
}

const UNITS: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

export function parseWhere(text: string): Condition[] {
  return text.split(',').map((part) => part.trim()).filter((p) => p !== '').map((part) => {
    const m = /^([A-Za-z0-9_.]+)\s*(<=|>=|!=|<|>|=)\s*(.+)$/.exec(part);
    if (!m) throw new NxtError('usage', `--where "${part}": expected FIELD<VALUE (or <= > >= = !=), e.g. disk.dataFreeBytes<1GiB`);
    const n = /^(-?\d+(?:\.\d+)?)\s*(k|M|G|KiB|MiB|GiB|TiB)?$/.exec(m[3]!.trim());
    return { path: m[1]!.split('.'), op: m[2] as Condition['op'], value: n ? Number(n[1]) * UNITS[n[2] ?? '']! : m[3]!.trim() };
  });
}

function field(report: unknown, path: readonly string[]): unknown {
  let at: unknown = report;
  for (const key of path) {
    if (typeof at !== 'object' || at === null || !Object.hasOwn(at, key)) return undefined;
    at = (at as Record<string, unknown>)[key];
  }
  return at;
}

export function matchesWhere(report: unknown, conditions: readonly Condition[]): boolean {
  return conditions.every((c) => {
    const v = field(report, c.path);
    if (v === undefined || v === null) return false;
    const a = typeof c.value === 'number' ? Number(v) : String(v);
    if (typeof c.value === 'number' && !Number.isFinite(a as number)) return false;
    switch (c.op) {
      case '<': return a < c.value;
      case '<=': return a <= c.value;
      case '>': return a > c.value;
      case '>=': return a >= c.value;
      case '=': return a === c.value;
      default: return a !== c.value;
    }
  });
}
