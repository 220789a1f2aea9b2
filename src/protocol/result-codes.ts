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
  // Safe rollouts: why a module was refused at its trial or rolled back in its probation
  // (docs/plugins.md). LwM2M calls all of these "firmware update failed" (Update Result 8).
  /** It did not finish loading (or its selfTest()) in time, or stopped answering. */
  hung: 17,
  /** Its heap passed the cap, or the agent's memory grew past the limit while it ran. */
  outOfMemory: 18,
  /** It ended its thread: process.exit() or the like. */
  exited: 19,
  /** An uncaught error or unhandled rejection from it. */
  crashed: 20,
  selfTestFailed: 21,
  /** Its healthCheck() failed or returned false during probation. */
  unhealthy: 22,
  /** The agent stopped (crash, kill, power) while it was on probation: the previous one runs. */
  interrupted: 23,
  /** This module was rolled back on this device before: it is not tried again. */
  rolledBack: 24,
  /** Its signed manifest says it is for other kinds of device (type, product, arch, channel,
   *  agent version): security/compatibility.ts. */
  notForDevice: 25,
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
