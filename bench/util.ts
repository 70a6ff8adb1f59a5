/** Shared helpers for `npm run bench`: timing loops and percentiles. */
import { generateKeyPairSync, sign, verify } from 'node:crypto'
import { readFileSync } from 'node:fs'

export interface Rate {
  perSec: number
  ops: number
  seconds: number
}

/** Runs `fn` in a tight loop for `seconds` and reports ops/s. */
export function loopRate(seconds: number, fn: () => void): Rate {
  const end = performance.now() + seconds * 1000
  let ops = 0
  const start = performance.now()
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) fn()
    ops += 64
  }
  const elapsed = (performance.now() - start) / 1000
  return { perSec: ops / elapsed, ops, seconds: elapsed }
}

/** Latency percentiles (ms) of a sample of durations in ms. */
export function percentiles(samples: number[]): { p50: number; p99: number; max: number } {
  const s = [...samples].sort((a, b) => a - b)
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN }
}

/** The raw node:crypto Ed25519 baselines, measured in the same run as what they are compared with. */
export function ed25519Baseline(seconds: number): { signPerSec: number; verifyPerSec: number } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const msg = Buffer.from(`eyJhbGciOiJFZERTQSJ9.${'x'.repeat(300)}`)
  const sig = sign(null, msg, privateKey)
  const s = loopRate(seconds, () => {
    sign(null, msg, privateKey)
  })
  const v = loopRate(seconds, () => {
    verify(null, msg, publicKey, sig)
  })
  return { signPerSec: s.perSec, verifyPerSec: v.perSec }
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

/** Operations per second of `fn` over `seconds`. */
export function opsPerSec(seconds: number, fn: () => void): number {
  return loopRate(seconds, fn).perSec
}

/** base64url of a value's JSON (JWS segments built by hand in benches). */
export function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/** utime + stime of a process (or with `thread`, of its main thread) in ms, from /proc (Linux); NaN elsewhere. */
export function processCpuMs(pid: number | undefined, thread = false): number {
  if (pid === undefined) return NaN
  try {
    const stat = readFileSync(thread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15 (clock ticks, 100/s on Linux).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * 10
  } catch {
    return NaN
  }
}

/** A process's write(2)-family calls and bytes so far, all its threads (/proc/<pid>/io); NaN where that is missing. */
export function processIo(pid: number | undefined): { syscw: number; wchar: number } {
  try {
    const fields = new Map(
      readFileSync(`/proc/${pid}/io`, 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split(': ') as [string, string]),
    )
    return { syscw: Number(fields.get('syscw')), wchar: Number(fields.get('wchar')) }
  } catch {
    return { syscw: NaN, wchar: NaN }
  }
}

/** CPU (ms) of a process and its children (a gateway's cluster workers), from /proc; NaN elsewhere. */
export function processTreeCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN
  let children: number[] = []
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    /* no children file: the process alone */
  }
  return children.reduce((sum, c) => sum + processCpuMs(c), processCpuMs(pid))
}

/** Alternating rounds of every side-by-side row (issuance against node-oidc-provider, /v1/authorize against bare fastify). */
export const SIDE_BY_SIDE_ROUNDS = 3

/** One round of a side-by-side measurement: the two figures and their ratio. */
export interface Round<T> {
  ours: T
  anchor: T
  /** ours / anchor of the compared figure. */
  ratio: number
}

/**
 * Waits until the processes `pids` (with their children) are nearly idle:
 * under 5 % of a core together over 250 ms, for at most 10 s. After a load
 * a server goes on working for a while (a WAL checkpoint, garbage
 * collection, an upload of buffered records), which must not land on the
 * next measurement of another server.
 */
export async function quiet(pids: ReadonlyArray<number | undefined>): Promise<void> {
  const cpu = (): number => pids.reduce<number>((sum, pid) => sum + (processTreeCpuMs(pid) || 0), 0)
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const before = cpu()
    await new Promise((r) => setTimeout(r, 250))
    if (cpu() - before < 12.5) return
  }
}

/**
 * Measures `ours` and `anchor` in `rounds` alternating rounds (ours first,
 * then anchor first, and so on), so that a change in the machine's speed
 * during the run (a shared, noisy host: the anchor alone swung 1.7× between
 * minutes here) falls on both alike instead of on whichever ran later. Each
 * measurement starts once the servers `pids` are quiet again. Returns the
 * rounds sorted by ratio; the middle one is the reported figure and the
 * first and last give the spread.
 */
export async function sideBySide<T>(
  rounds: number,
  pids: ReadonlyArray<number | undefined>,
  ours: () => Promise<T>,
  anchor: () => Promise<T>,
  ratio: (ours: T, anchor: T) => number,
): Promise<Array<Round<T>>> {
  const out: Array<Round<T>> = []
  const settled = async <R>(fn: () => Promise<R>): Promise<R> => {
    await quiet(pids)
    return fn()
  }
  for (let i = 0; i < rounds; i++) {
    let a: T
    let o: T
    if (i % 2 === 0) {
      o = await settled(ours)
      a = await settled(anchor)
    } else {
      a = await settled(anchor)
      o = await settled(ours)
    }
    out.push({ ours: o, anchor: a, ratio: ratio(o, a) })
  }
  return out.sort((x, y) => x.ratio - y.ratio)
}

/** The middle round of sideBySide's sorted rounds. */
export function medianRound<T>(rounds: ReadonlyArray<Round<T>>): Round<T> {
  const r = rounds[Math.floor(rounds.length / 2)]
  if (r === undefined) throw new Error('no rounds measured')
  return r
}

/** Each round's ratio of another figure (ours / anchor), sorted, for ratioWithSpread. */
export function ratiosOf<T>(rounds: ReadonlyArray<Round<T>>, figure: (x: T) => number): Array<{ ratio: number }> {
  return rounds.map((r) => ({ ratio: figure(r.ours) / figure(r.anchor) })).sort((a, b) => a.ratio - b.ratio)
}

/** "1.52× (1.41–1.60× over 3 rounds)": the median ratio and its spread. */
export function ratioWithSpread(rounds: ReadonlyArray<{ ratio: number }>, digits = 2): string {
  const median = rounds[Math.floor(rounds.length / 2)]?.ratio ?? NaN
  if (rounds.length < 2) return `${median.toFixed(digits)}×`
  return `${median.toFixed(digits)}× (${rounds[0]!.ratio.toFixed(digits)}–${rounds[rounds.length - 1]!.ratio.toFixed(digits)}× over ${rounds.length} rounds)`
}
