/**
 * Time, timers, randomness and HTTP plumbing the SDK takes by injection, so
 * tests (and simulations of thousands of agents) can drive them by hand.
 */

/** Source of time, in milliseconds since the epoch. Structurally the same as the server's `Clock`. */
export interface SdkClock {
  now(): number
}

/** Opaque timer handle returned by a {@link Scheduler}. */
export type TimerHandle = unknown

/**
 * Where the SDK schedules its timers (background refresh, retry backoff,
 * approval polling). The default is Node's `setTimeout`; a simulation passes
 * one driven by a manual clock.
 */
export interface Scheduler {
  /** Runs `callback` once after `ms` milliseconds (of the scheduler's clock). */
  setTimeout(callback: () => void, ms: number): TimerHandle
  /** Cancels a pending timer; a no-op for one that already ran. */
  clearTimeout(handle: TimerHandle): void
}

/** `fetch` as Node 20 defines it globally. */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

/** The wall clock. */
export const systemClock: SdkClock = { now: () => Date.now() }

/** Node's timers. */
export const systemScheduler: Scheduler = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

/**
 * Lets a background timer not keep the process alive (Node timers have
 * `unref`; a manual scheduler's handles need not).
 */
export function unrefTimer(handle: TimerHandle): void {
  if (handle && typeof handle === 'object' && 'unref' in handle && typeof handle.unref === 'function') handle.unref()
}

/** A set of cancellable sleeps, so `close()` can end every pending wait at once. */
export class Sleeper {
  private readonly pending = new Map<TimerHandle, (err: Error) => void>()

  constructor(private readonly scheduler: Scheduler) {}

  /** Resolves after `ms`, or rejects with `abortError` when cancelled. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal))
        return
      }
      const onAbort = (): void => {
        this.scheduler.clearTimeout(handle)
        this.pending.delete(handle)
        reject(abortReason(signal!))
      }
      const handle = this.scheduler.setTimeout(
        () => {
          this.pending.delete(handle)
          signal?.removeEventListener('abort', onAbort)
          resolve()
        },
        Math.max(0, ms),
      )
      this.pending.set(handle, (err) => {
        signal?.removeEventListener('abort', onAbort)
        reject(err)
      })
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Rejects every pending sleep with `err`. */
  cancelAll(err: Error): void {
    for (const [handle, reject] of this.pending) {
      this.scheduler.clearTimeout(handle)
      reject(err)
    }
    this.pending.clear()
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted')
}

/**
 * Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date.
 * Returns milliseconds (0 or more), or undefined when absent or unparsable.
 * Capped at one hour so a hostile header cannot park a client forever.
 */
export function parseRetryAfter(value: string | null, clock: SdkClock): number | undefined {
  if (value === null) return undefined
  const v = value.trim()
  let ms: number
  if (/^\d{1,10}$/.test(v)) ms = Number(v) * 1000
  else {
    const at = Date.parse(v)
    if (Number.isNaN(at)) return undefined
    ms = at - clock.now()
  }
  return Math.min(Math.max(0, ms), 3_600_000)
}

/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff and Jitter"): uniform in [0, min(cap, base·2^attempt)], but never
 * shorter than what the server asked for with `Retry-After`.
 */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number, retryAfterMs?: number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt)
  const jittered = Math.floor(random() * ceiling)
  return retryAfterMs === undefined ? jittered : Math.max(retryAfterMs, jittered)
}

/**
 * Reads a response body as text, refusing more than `limit` bytes so a broken
 * or hostile server cannot exhaust memory.
 */
export async function readBounded(res: Response, limit: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0')
  if (declared > limit) {
    await res.body?.cancel().catch(() => {})
    throw new RangeError('response too large')
  }
  if (!res.body) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel().catch(() => {})
      throw new RangeError('response too large')
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Parses a JSON object body; anything else (array, scalar, bad JSON) gives undefined. */
export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text)
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** Bounds a server-supplied string before it goes into an error message. */
export function boundedText(v: unknown, max = 500): string | undefined {
  return typeof v === 'string' ? v.slice(0, max) : undefined
}

/**
 * The `error` parameter of a `WWW-Authenticate: Bearer …` challenge
 * (RFC 6750 §3), or undefined.
 */
export function bearerChallengeError(header: string | null): string | undefined {
  if (!header) return undefined
  const m = /(?:^|[\s,])error\s*=\s*(?:"([^"]*)"|([^\s,]+))/i.exec(header)
  return m ? (m[1] ?? m[2]) : undefined
}
