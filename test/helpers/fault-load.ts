/**
 * Steady load for fault-injection tests, from the test process to real
 * control planes and gateways on loopback: token issuance
 * (client_credentials) at every control plane, and `POST /v1/authorize` at
 * every gateway, plain reads with each agent's newest token and high-risk
 * calls (single-use jti) with tokens never used for one. Open loop at fixed
 * rates with a cap on requests in flight, bounded in time and count. Every
 * answer is kept as a {@link Sample}, and {@link analyseFault} turns them
 * into what was sent, refused, and when every request succeeded again.
 */
import { decodeJwt, decodeProtectedHeader } from 'jose'

/** One request and its outcome. Times are `performance.now()` ms. */
export interface Sample {
  /** `token cp-1`, `read gw-2`, `high gw-1`; the revoked agent's streams start with `victim`. */
  stream: string
  start: number
  end: number
  /** HTTP status, or `conn` (connection refused or reset), or `timeout`. */
  status: number | 'conn' | 'timeout'
  /** Whether the answer was what a healthy system gives: a token, or `allow`. */
  ok: boolean
  /** A 5xx that came with `Retry-After`. */
  retryAfter: boolean
  /** Token requests: the issued token's jti; decisions: the jti of the token used. */
  jti?: string
  /** The kid of the issued token / of the token used. */
  kid?: string
  /** Decisions: when the token used was answered by the token endpoint. */
  tokenAt?: number
  /** Decisions answered 200: the decision. */
  decision?: string
}

export interface LoadAgent {
  agentId: string
  clientId: string
  clientSecret: string
}

export interface LoadTarget {
  name: string
  url: string
}

export interface FaultLoadOptions {
  controlPlanes: LoadTarget[]
  gateways: LoadTarget[]
  /** Agents whose tokens carry the steady load (round robin). */
  agents: LoadAgent[]
  /** An agent that will be revoked: its own token requests and reads, kept apart from the steady load. */
  victim: LoadAgent
  readAction: unknown
  highAction: unknown
  /** Requests per second, per control plane / per gateway. */
  rates?: Partial<Record<'token' | 'read' | 'high' | 'victimToken' | 'victimRead', number>>
  /** Hard bounds: the load stops by itself after this long (ms) or this many requests per stream. */
  maxDurationMs: number
  maxPerStream?: number
  /** Requests in flight per stream beyond which a due request is not sent. */
  maxInFlight?: number
  requestTimeoutMs?: number
}

interface HeldToken {
  token: string
  jti: string
  kid: string
  at: number
}

const DEFAULT_RATES = { token: 20, read: 25, high: 8, victimToken: 2, victimRead: 10 }
/** Unused tokens kept for high-risk calls (newest first); older ones are dropped. */
const HIGH_POOL = 256

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function outcomeOf(err: unknown): 'conn' | 'timeout' {
  const name = (err as { name?: string }).name
  return name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'conn'
}

export class FaultLoad {
  readonly samples: Sample[] = []
  /** Names of the steady-load streams (not the victim's). */
  readonly streams: string[]
  private readonly latest = new Map<string, HeldToken>()
  private readonly highPool: HeldToken[] = []
  private victimToken: HeldToken | undefined
  private running = false
  private readonly loops: Promise<void>[] = []
  private readonly rates: typeof DEFAULT_RATES
  private nextAgent = 0
  private readonly inFlight = new Map<string, number>()
  /** Start times of the requests not answered yet. */
  private readonly pendingStarts = new Set<{ start: number }>()

  constructor(private readonly opts: FaultLoadOptions) {
    this.rates = { ...DEFAULT_RATES, ...opts.rates }
    this.streams = [
      ...opts.controlPlanes.map((c) => `token ${c.name}`),
      ...opts.gateways.map((g) => `read ${g.name}`),
      ...opts.gateways.map((g) => `high ${g.name}`),
    ]
  }

  /** Starts every stream. */
  start(): void {
    this.running = true
    const deadline = performance.now() + this.opts.maxDurationMs
    for (const cp of this.opts.controlPlanes) {
      this.loops.push(this.loop(`token ${cp.name}`, this.rates.token, deadline, () => this.issue(cp, `token ${cp.name}`, this.agentForToken())))
      this.loops.push(this.loop(`victim-token ${cp.name}`, this.rates.victimToken, deadline, () => this.issue(cp, `victim-token ${cp.name}`, this.opts.victim)))
    }
    for (const gw of this.opts.gateways) {
      this.loops.push(
        this.loop(`read ${gw.name}`, this.rates.read, deadline, () => {
          const t = this.latestToken()
          return t ? this.decide(gw, `read ${gw.name}`, t, this.opts.readAction) : null
        }),
      )
      this.loops.push(
        this.loop(`high ${gw.name}`, this.rates.high, deadline, () => {
          const t = this.highPool.shift()
          return t ? this.decide(gw, `high ${gw.name}`, t, this.opts.highAction) : null
        }),
      )
      this.loops.push(
        this.loop(`victim-read ${gw.name}`, this.rates.victimRead, deadline, () => {
          const t = this.victimToken
          return t ? this.decide(gw, `victim-read ${gw.name}`, t, this.opts.readAction) : null
        }),
      )
    }
  }

  /**
   * Calls `action` at every gateway with one fixed token, `rate` per second
   * each, until `untilMs` (performance.now()) or stop(): what a client that
   * never refreshes its token sees. Streams `<name> <gateway>`, kept apart
   * from the steady load.
   */
  holdToken(name: string, token: string, action: unknown, rate: number, untilMs: number): void {
    const held: HeldToken = { token, jti: String(decodeJwt(token).jti), kid: String(decodeProtectedHeader(token).kid), at: performance.now() }
    for (const gw of this.opts.gateways) {
      this.loops.push(this.loop(`${name} ${gw.name}`, rate, untilMs, () => this.decide(gw, `${name} ${gw.name}`, held, action)))
    }
  }

  /** Stops sending and waits for every request in flight. */
  async stop(): Promise<void> {
    this.running = false
    await Promise.all(this.loops)
  }

  /** Tokens answered 200 (jti), victim's included. */
  issuedJtis(): string[] {
    return this.samples.filter((s) => s.stream.includes('token ') && s.ok && s.jti).map((s) => s.jti!)
  }

  private agentForToken(): LoadAgent {
    const a = this.opts.agents[this.nextAgent % this.opts.agents.length]!
    this.nextAgent++
    return a
  }

  /** The newest token of a random steady-load agent. */
  private latestToken(): HeldToken | undefined {
    const a = this.opts.agents[Math.floor(Math.random() * this.opts.agents.length)]!
    return this.latest.get(a.agentId)
  }

  /**
   * Fires `send()` every 1/rate s (open loop: a slow answer does not slow the
   * schedule) while running, before `deadline`, under the in-flight cap and
   * the per-stream count; `send` returns null when it has nothing to send.
   */
  private async loop(stream: string, rate: number, deadline: number, send: () => Promise<void> | null): Promise<void> {
    const interval = 1000 / rate
    const maxPerStream = this.opts.maxPerStream ?? 50_000
    const maxInFlight = this.opts.maxInFlight ?? 32
    const pending = new Set<Promise<void>>()
    let sent = 0
    // Spread the streams' phases so they do not all fire on the same tick.
    let next = performance.now() + Math.random() * interval
    while (this.running && performance.now() < deadline && sent < maxPerStream) {
      const wait = next - performance.now()
      if (wait > 0) await sleep(wait)
      next += interval
      if (!this.running) break
      if ((this.inFlight.get(stream) ?? 0) >= maxInFlight) continue
      const mark = { start: performance.now() }
      const p = send()
      if (p === null) continue
      sent++
      this.pendingStarts.add(mark)
      p.finally(() => this.pendingStarts.delete(mark)).catch(() => {})
      this.inFlight.set(stream, (this.inFlight.get(stream) ?? 0) + 1)
      const tracked = p.finally(() => {
        this.inFlight.set(stream, (this.inFlight.get(stream) ?? 1) - 1)
        pending.delete(tracked)
      })
      pending.add(tracked)
    }
    await Promise.all(pending)
  }

  private async issue(cp: LoadTarget, stream: string, agent: LoadAgent): Promise<void> {
    const start = performance.now()
    const sample: Sample = { stream, start, end: start, status: 'conn', ok: false, retryAfter: false }
    try {
      const res = await fetch(`${cp.url}/oauth2/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${encodeURIComponent(agent.clientId)}:${encodeURIComponent(agent.clientSecret)}`).toString('base64')}`,
        },
        body: 'grant_type=client_credentials',
        signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 5_000),
      })
      const text = await res.text()
      sample.status = res.status
      sample.retryAfter = res.headers.get('retry-after') !== null
      if (res.status === 200) {
        const token = (JSON.parse(text) as { access_token?: string }).access_token
        if (typeof token === 'string') {
          const held: HeldToken = { token, jti: String(decodeJwt(token).jti), kid: String(decodeProtectedHeader(token).kid), at: performance.now() }
          sample.ok = true
          sample.jti = held.jti
          sample.kid = held.kid
          if (agent === this.opts.victim) {
            this.victimToken = held
          } else {
            this.latest.set(agent.agentId, held)
            this.highPool.unshift(held)
            if (this.highPool.length > HIGH_POOL) this.highPool.pop()
          }
        }
      }
    } catch (err) {
      sample.status = outcomeOf(err)
    }
    sample.end = performance.now()
    this.samples.push(sample)
  }

  private async decide(gw: LoadTarget, stream: string, held: HeldToken, action: unknown): Promise<void> {
    const start = performance.now()
    const sample: Sample = { stream, start, end: start, status: 'conn', ok: false, retryAfter: false, jti: held.jti, kid: held.kid, tokenAt: held.at }
    try {
      const res = await fetch(`${gw.url}/v1/authorize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${held.token}` },
        body: JSON.stringify(action),
        signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 5_000),
      })
      const text = await res.text()
      sample.status = res.status
      sample.retryAfter = res.headers.get('retry-after') !== null
      if (res.status === 200) {
        sample.decision = String((JSON.parse(text) as { decision?: unknown }).decision)
        sample.ok = sample.decision === 'allow'
      }
    } catch (err) {
      sample.status = outcomeOf(err)
    }
    sample.end = performance.now()
    this.samples.push(sample)
  }

  /**
   * Waits until the steady load has run `stableMs` without a failure since
   * `from` (failures `intended` excludes do not count), with at least one
   * success on every stream in that stretch. Resolves true then, false once
   * `limitMs` passed since `from`.
   */
  async waitStable(from: number, opts: { stableMs: number; limitMs: number; intended?: (s: Sample) => boolean }): Promise<boolean> {
    const intended = opts.intended ?? (() => false)
    for (;;) {
      const now = performance.now()
      let since = from
      for (const s of this.samples) if (s.start >= from && this.streams.includes(s.stream) && !s.ok && !intended(s) && s.start > since) since = s.start
      // Nothing hanging (unanswered for 5 s): it may yet fail. Slower answers are a busy machine's normal.
      let oldestPending = Infinity
      for (const m of this.pendingStarts) oldestPending = Math.min(oldestPending, m.start)
      if (now - since >= opts.stableMs && now - oldestPending < 5_000) {
        const covered = new Set(this.samples.filter((s) => s.start > since && s.ok).map((s) => s.stream))
        if (this.streams.every((st) => covered.has(st))) return true
      }
      if (now - from > opts.limitMs) return false
      await sleep(100)
    }
  }
}

/** What one fault did to the steady load. */
export interface FaultOutcome {
  /** Steady-load requests answered from the fault's start until the next fault's start (a request is counted where its answer fell). */
  sent: number
  /** Of those, failures by kind and status (`token 503`, `high 401`, `token conn`, `read timeout`, `read 200 deny`, …), intended ones excluded. */
  refused: Record<string, number>
  /** Refusals the fault meant (e.g. tokens of an emergency-revoked key), by status. */
  intended: Record<string, number>
  /**
   * Time (ms) from the fault's end to the first request from which every
   * steady-load request succeeded until `until`; 0 when none failed after the
   * end; null when the last request sent still failed.
   */
  recoveryMs: number | null
}

/**
 * Counts and recovery of the steady load answered over [start, until), the
 * fault ending at `end`. A request in flight when the next fault began is
 * counted there, not here: its failure may be that fault's doing.
 */
export function analyseFault(
  samples: readonly Sample[],
  streams: readonly string[],
  window: { start: number; end: number; until: number },
  intended: (s: Sample) => boolean = () => false,
): FaultOutcome {
  const inWindow = samples.filter((s) => streams.includes(s.stream) && s.end >= window.start && s.end < window.until).sort((a, b) => a.start - b.start)
  const refused: Record<string, number> = {}
  const meant: Record<string, number> = {}
  let lastFailure = -Infinity
  for (const s of inWindow) {
    if (s.ok) continue
    // `token 503`, `high 503`, `read conn`, `read 200 deny`: which kind of request, refused how.
    const key = `${s.stream.split(' ')[0]} ${s.status === 200 ? `200 ${s.decision ?? '?'}` : String(s.status)}`
    if (intended(s)) {
      meant[key] = (meant[key] ?? 0) + 1
      continue
    }
    refused[key] = (refused[key] ?? 0) + 1
    if (s.start >= window.end) lastFailure = Math.max(lastFailure, s.start)
  }
  let recoveryMs: number | null = 0
  if (lastFailure > -Infinity) {
    const firstGood = inWindow.find((s) => s.start > lastFailure && s.ok)
    recoveryMs = firstGood ? firstGood.start - window.end : null
  }
  return { sent: inWindow.length, refused, intended: meant, recoveryMs }
}
