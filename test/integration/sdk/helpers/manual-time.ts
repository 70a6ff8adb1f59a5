/**
 * A scheduler driven by a ManualClock, so a test can simulate minutes of
 * token lifetime (and thousands of agents) without waiting for them.
 */
import type { Scheduler, TimerHandle } from '../../../../src/sdk/index.js'
import { ManualClock } from '../../../../src/lib/clock.js'

interface Timer {
  id: number
  at: number
  callback: () => void
}

export class ManualScheduler implements Scheduler {
  private readonly timers = new Map<number, Timer>()
  private seq = 0
  /** Every delay ever requested, in order (ms). */
  readonly requested: number[] = []

  constructor(readonly clock: ManualClock) {}

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const id = ++this.seq
    this.requested.push(ms)
    this.timers.set(id, { id, at: this.clock.now() + ms, callback })
    return id
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as number)
  }

  /** Pending timers. */
  get size(): number {
    return this.timers.size
  }

  /** When the earliest pending timer is due, or undefined. */
  nextDue(): number | undefined {
    let min: number | undefined
    for (const t of this.timers.values()) if (min === undefined || t.at < min) min = t.at
    return min
  }

  /**
   * Moves the clock forward to `target`, firing every timer due by then in
   * order of due time, with the clock set to each timer's due time as it
   * fires. Timers scheduled by a callback are fired too if they fall due
   * before `target`. Returns how many fired.
   */
  fireUntil(target: number): number {
    let fired = 0
    for (;;) {
      let next: Timer | undefined
      for (const t of this.timers.values()) if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t
      if (!next) break
      this.timers.delete(next.id)
      if (next.at > this.clock.now()) this.clock.set(next.at)
      next.callback()
      fired++
    }
    if (target > this.clock.now()) this.clock.set(target)
    return fired
  }
}

/**
 * Waits (real time, in small steps) until `predicate` holds; fails after
 * `limitMs` of real time. Lets pending microtasks run first, so work a timer
 * callback started (e.g. a fetch behind an await) is visible to the predicate.
 */
export async function waitUntil(predicate: () => boolean, what: string, limitMs = 20_000): Promise<void> {
  await new Promise((r) => setImmediate(r))
  const start = Date.now()
  while (!predicate()) {
    if (Date.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

/** Deterministic uniform random in [0, 1) (mulberry32), so simulations repeat exactly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export { ManualClock }
