/** Source of time. Inject it; never call `Date.now()` in logic that tests need to steer. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

/** A clock tests advance by hand. */
export class ManualClock implements Clock {
  constructor(private ms: number = Date.now()) {}
  now(): number {
    return this.ms
  }
  advance(ms: number): void {
    this.ms += ms
  }
  set(ms: number): void {
    this.ms = ms
  }
}

/** Integer epoch seconds of an epoch-ms time: the one unit of every `*_at` field the admin API answers (docs/reference.md "Times and units"). */
export function epochSeconds(ms: number): number {
  return Math.floor(ms / 1000)
}

/** {@link epochSeconds}, with null (not yet, never) kept. */
export function epochSecondsOrNull(ms: number | null | undefined): number | null {
  return ms === null || ms === undefined ? null : Math.floor(ms / 1000)
}
