/** Milliseconds on a monotonic scale. Everything below cli/ receives one instead of reading time. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
};

/** Wall-clock time for records a person reads (history, manifests); not for timers. */
export interface WallClock {
  wallNow(): Date;
}

export const systemWallClock: WallClock = {
  wallNow: () => new Date(),
};
