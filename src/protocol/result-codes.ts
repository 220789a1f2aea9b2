/**
 * Why a transfer ended, as carried in RESULT and ABORT messages. The numbers are wire values:
 * never renumber, only append.
 */
export const ResultCode = {
  ok: 0,
  badSignature: 1,
  rollback: 2,
  hashMismatch: 3,
  sizeMismatch: 4,
  loadFailed: 5,
  badShape: 6,
  tooLarge: 7,
  badManifest: 8,
  timeout: 9,
  storage: 10,
  cancelled: 11,
  unknownTransfer: 12,
  superseded: 13,
  expired: 14,
  wrongTarget: 15,
  /** Verified and kept, not activated: the device defers updates until `upgrade`. */
  deferred: 16,
} as const;

export type ResultCodeName = keyof typeof ResultCode;
export type ResultCodeValue = (typeof ResultCode)[ResultCodeName];

const names = new Map<number, ResultCodeName>(
  (Object.entries(ResultCode) as [ResultCodeName, number][]).map(([name, value]) => [value, name]),
);

/** A result code from the wire; values we do not know are kept as 'unknown-N' rather than rejected. */
export function resultCodeName(value: number): string {
  return names.get(value) ?? `unknown-${value}`;
}
