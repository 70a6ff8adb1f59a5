/**
 * AegisClient: the agent side of Aegis. Gets and refreshes tokens, attaches
 * them to calls, asks the gateway for decisions and follows approvals to
 * their one-time override.
 */
import { AegisSdkError, AegisUnavailableError } from './errors.js'
import {
  type FetchLike,
  type Scheduler,
  type SdkClock,
  Sleeper,
  backoffDelay,
  bearerChallengeError,
  boundedText,
  parseJsonObject,
  parseRetryAfter,
  readBounded,
  systemClock,
  systemScheduler,
} from './runtime.js'
import { DelegationSource, TOKEN_TYPE_ID_TOKEN, type TokenInput } from './delegation.js'
import { ClientCredentialsSource, type ClientAuthMethod, type RefreshInfo, type RetryOptions, type TokenSource } from './token-source.js'

/** A gateway decision (docs/reference.md "Gateway"). */
export type Decision = 'allow' | 'deny' | 'approval_needed' | 'sanitize'

/** Where an approval stands (`GET status_url`, docs/reference.md "Approvals"). */
export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired'

/** An obligation the caller must honour, e.g. `{ type: 'redact', path: '/params/card_number' }` (RFC 6901 pointer). */
export interface Obligation {
  readonly type: string
  readonly path?: string
  readonly [key: string]: unknown
}

/** The approval a call opened (`approval_needed`). */
export interface ApprovalRef {
  readonly id: string
  /** Poll this (GET, same bearer token) for the approval's status. */
  readonly status_url: string
  /**
   * Set by the SDK when `waitForApproval` ended without approval: the last
   * status seen (`denied`, `expired`), or `timeout` when `timeoutMs` ran out
   * while still pending. Absent in what the gateway sent.
   */
  readonly outcome?: Exclude<ApprovalStatus, 'approved'> | 'timeout'
}

/**
 * The body of `POST /v1/authorize` (docs/reference.md "Gateway"). Only `allow` and
 * `sanitize` (with `params` replaced by the sanitized ones) mean go ahead.
 */
export interface AuthorizeResult {
  readonly decision: Decision
  readonly reasons: readonly string[]
  readonly policy_version?: string
  readonly obligations: readonly Obligation[]
  /** The parameters to use: sanitized when `decision` is `sanitize`. */
  readonly params?: Record<string, unknown>
  readonly approval?: ApprovalRef
  /** False in shadow mode or for a dry run: the decision was not enforced. */
  readonly enforced: boolean
  /** Extra fields the gateway may add. */
  readonly [key: string]: unknown
}

/** The concrete tool call to decide on. */
export interface AuthorizeAction {
  /** Tool name, e.g. `payments.transfer`. */
  tool: string
  /** Call parameters (policy context). */
  params?: Record<string, unknown>
}

/** Options of {@link AegisClient.authorize}. */
export interface AuthorizeOptions {
  /** Send `Aegis-Dry-Run: 1` for this call (overrides the client-wide switch). */
  dryRun?: boolean
  /**
   * On `approval_needed`, poll the approval until it is decided, then repeat
   * exactly this call once with the override token. Ignored for dry runs.
   */
  waitForApproval?: boolean
  /**
   * Upper bound on the whole call including the approval wait and retries,
   * ms. Default 5 minutes when waiting, else 30 s. Within it, a gateway that
   * cannot be reached or answers 429 / 502 / 503 / 504 is asked again with
   * backoff (never sooner than its `Retry-After`); a wait that would end
   * after the deadline is not begun: the call fails at once with
   * {@link AegisUnavailableError} (`retryAfterMs` set when the gateway asked).
   */
  timeoutMs?: number
  /** The target resource (`resource` in the request body). */
  resource?: string
  /** Cancels the call (and any approval wait). */
  signal?: AbortSignal
}

/** Options of {@link AegisClient.delegate}. */
export interface DelegateOptions {
  /** The sub-agent: its client, or its own token source (its own Aegis token is the `actor_token`). */
  to: AegisClient | TokenSource
  /** Tools the sub-agent may call: a subset of what both hold; default all of that. */
  capabilities?: string[]
  /** Scopes, a subset of both tokens'; default all they share. */
  scope?: string | string[]
  /** Audience(s), among both tokens'; default the ones they share. */
  audience?: string | string[]
  /** Asked lifetime of each delegated token, seconds (capped by the server). */
  ttl?: number
}

/** Options of {@link AegisClient.actOnBehalfOf}. */
export interface ActOnBehalfOfOptions {
  /** `subject_token_type` of the person's token. Default `urn:ietf:params:oauth:token-type:id_token`. */
  userTokenType?: string
  capabilities?: string[]
  scope?: string | string[]
  audience?: string | string[]
  ttl?: number
}

/** Options of {@link AegisClient}. */
export interface AegisClientOptions {
  /** The Aegis issuer URL, e.g. `http://127.0.0.1:7400`. */
  issuer: string
  /** Bootstrap credential; required unless `tokenSource` is given. */
  clientId?: string
  clientSecret?: string
  /** Requested scope(s). */
  scope?: string | string[]
  /** Requested audience(s). */
  audience?: string | string[]
  /** Gateway base URL, e.g. `http://127.0.0.1:7401`; required for `authorize`. */
  gatewayUrl?: string
  /** Client-wide dry run: every `authorize` sends `Aegis-Dry-Run: 1`. */
  dryRun?: boolean
  /**
   * Receives every decision that was not enforced (a dry-run call, or the
   * gateway answering `enforced: false` in shadow mode). An exception it
   * throws fails the `authorize` call.
   */
  onDryRunDecision?: (decision: AuthorizeResult, action: AuthorizeAction) => void
  /** Use this token source instead of client credentials (token exchange, …). */
  tokenSource?: TokenSource
  /** Token endpoint authentication. Default `client_secret_basic`. */
  authMethod?: ClientAuthMethod
  /** Token endpoint(s), when not to be discovered (several: failover, as with `controlPlaneUrls`). */
  tokenEndpoint?: string | string[]
  /**
   * Base URLs of several control planes of this issuer, to fail over
   * between: token requests go to `{url}/oauth2/token` of the one that
   * answered last, and to the next one when it is unreachable or answers
   * 5xx (see {@link OAuthTokenSourceOptions.controlPlaneUrls}). Their
   * origins are also trusted for `status_url`. Not with `tokenEndpoint`.
   */
  controlPlaneUrls?: string[]
  /** Refresh window as fractions of the lifetime. Default `[0.6, 0.85]`. */
  refreshWindow?: [number, number]
  /** Retry tuning of token requests. */
  retry?: RetryOptions
  /** Observes token refresh attempts (never sees the token). */
  onRefresh?: (info: RefreshInfo) => void
  /**
   * Origins that `status_url` may point at (the bearer token goes there).
   * Default: the gateway's and the issuer's.
   */
  approvalOrigins?: string[]
  /** Time, timers, randomness and fetch, for tests and simulations. */
  clock?: SdkClock
  scheduler?: Scheduler
  random?: () => number
  fetch?: FetchLike
}

const MAX_DECISION_BYTES = 1024 * 1024
const MAX_STATUS_BYTES = 64 * 1024
const DECISIONS: ReadonlySet<string> = new Set(['allow', 'deny', 'approval_needed', 'sanitize'])
const STATUSES: ReadonlySet<string> = new Set(['pending', 'approved', 'denied', 'expired'])
/** Gateway answers worth asking again (rate limit, outage, a proxy's bad gateway / timeout). */
const RETRIED_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504])
const GATEWAY_RETRY_BASE_MS = 250
const GATEWAY_RETRY_CAP_MS = 5000
const POLL_MIN_MS = 500
const POLL_MAX_MS = 5000
/** Longest a single status request may be held by a long-polling server. */
const LONG_POLL_MS = 30_000

/**
 * The agent-side client.
 *
 * @example
 * const client = new AegisClient({ issuer, clientId, clientSecret, gatewayUrl })
 * const d = await client.authorize({ tool: 'crm.read', params: { id: '42' } }, { waitForApproval: true })
 * if (d.decision === 'allow' || d.decision === 'sanitize') callTheTool(d.params)
 */
export class AegisClient {
  /** Where tokens come from. */
  readonly tokenSource: TokenSource
  private readonly gatewayUrl: string | undefined
  private readonly dryRun: boolean
  private readonly onDryRunDecision: AegisClientOptions['onDryRunDecision']
  private readonly approvalOrigins: Set<string>
  private readonly clock: SdkClock
  private readonly random: () => number
  private readonly fetchImpl: FetchLike
  private readonly sleeper: Sleeper
  private readonly ownsSource: boolean
  private readonly options: AegisClientOptions

  constructor(options: AegisClientOptions) {
    this.options = options
    if (options.gatewayUrl !== undefined) new URL(options.gatewayUrl) // throws on a malformed URL
    this.clock = options.clock ?? systemClock
    this.random = options.random ?? Math.random
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init))
    this.sleeper = new Sleeper(options.scheduler ?? systemScheduler)
    if (options.tokenSource) {
      this.tokenSource = options.tokenSource
      this.ownsSource = false
    } else {
      if (!options.clientId || !options.clientSecret) throw new TypeError('clientId and clientSecret are required without a tokenSource')
      this.tokenSource = new ClientCredentialsSource({
        issuer: options.issuer,
        clientId: options.clientId,
        clientSecret: options.clientSecret,
        scope: options.scope,
        audience: options.audience,
        authMethod: options.authMethod,
        tokenEndpoint: options.tokenEndpoint,
        controlPlaneUrls: options.controlPlaneUrls,
        refreshWindow: options.refreshWindow,
        retry: options.retry,
        onRefresh: options.onRefresh,
        clock: options.clock,
        scheduler: options.scheduler,
        random: options.random,
        fetch: options.fetch,
      })
      this.ownsSource = true
    }
    this.gatewayUrl = options.gatewayUrl
    this.dryRun = options.dryRun ?? false
    this.onDryRunDecision = options.onDryRunDecision
    const origins =
      options.approvalOrigins ?? [options.gatewayUrl, options.issuer, ...(options.controlPlaneUrls ?? [])].filter((o): o is string => typeof o === 'string')
    this.approvalOrigins = new Set(origins.map((o) => new URL(o).origin))
  }

  /** A valid access token (cached; refreshed early with jitter; single flight). */
  getToken(): Promise<string> {
    return this.tokenSource.getToken()
  }

  /**
   * `fetch` with `Authorization: Bearer <token>`. On a `401` whose
   * `WWW-Authenticate` says `error="invalid_token"` (RFC 6750 §3.1) it gets a
   * fresh token and repeats the request once. A body that is a stream
   * (`ReadableStream`, async iterable) cannot be sent twice, so such a
   * request is not repeated: the 401 is returned as is. A `Request` as
   * `input` is cloned before the first attempt, so it can be repeated.
   */
  async fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const replayable = !isStreamBody(init?.body)
    const spare = input instanceof Request && replayable ? input.clone() : undefined
    const token = await this.tokenSource.getToken()
    const res = await this.fetchImpl(input, withBearer(input, init, token))
    if (!replayable || !isInvalidToken(res)) return res
    this.tokenSource.invalidate(token)
    const fresh = await this.tokenSource.getToken({ forceRefresh: false })
    await res.body?.cancel().catch(() => {})
    return this.fetchImpl(spare ?? input, withBearer(spare ?? input, init, fresh))
  }

  /**
   * Asks the gateway (`POST {gatewayUrl}/v1/authorize`) whether `action` may
   * run. With `waitForApproval` and an `approval_needed` answer it polls the
   * approval's `status_url` (with backoff, honouring `Retry-After`; a server
   * that holds the request long-polls) until it is decided or `timeoutMs`
   * runs out; when approved it repeats exactly this call once with
   * `Aegis-Override: <override_token>` and returns that answer. Otherwise it
   * returns the `approval_needed` answer with `approval.outcome` set
   * (`denied`, `expired` or `timeout`), which never means go ahead.
   *
   * Throws {@link AegisSdkError} when the gateway refuses the request itself
   * (e.g. 400 `invalid_request`, or `invalid_token` even after one refresh),
   * {@link AegisUnavailableError} when it cannot be reached.
   */
  async authorize(action: AuthorizeAction, options: AuthorizeOptions = {}): Promise<AuthorizeResult> {
    if (!this.gatewayUrl) throw new TypeError('gatewayUrl is required for authorize')
    if (!action || typeof action.tool !== 'string' || action.tool.length === 0) throw new TypeError('action.tool is required')
    const dryRun = options.dryRun ?? this.dryRun
    const waiting = options.waitForApproval === true && !dryRun
    const timeoutMs = options.timeoutMs ?? (waiting ? 300_000 : 30_000)
    const deadline = this.clock.now() + timeoutMs
    const signal = options.signal ? AbortSignal.any([options.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs)

    const body = JSON.stringify({
      action: action.params === undefined ? { tool: action.tool } : { tool: action.tool, params: action.params },
      ...(options.resource === undefined ? {} : { resource: options.resource }),
    })
    const url = new URL('/v1/authorize', this.gatewayUrl).toString()
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
    if (dryRun) headers['aegis-dry-run'] = '1'

    const first = await this.decide(url, body, headers, signal, deadline)
    if (dryRun || first.enforced === false) this.onDryRunDecision?.(first, action)
    if (!waiting || first.decision !== 'approval_needed' || !first.approval) return first

    const outcome = await this.waitForApproval(first.approval, deadline, signal)
    if (outcome.status !== 'approved') return { ...first, approval: { ...first.approval, outcome: outcome.status } }
    const retried = await this.decide(url, body, { ...headers, 'aegis-override': outcome.overrideToken }, signal, deadline)
    if (retried.enforced === false) this.onDryRunDecision?.(retried, action)
    return retried
  }

  /**
   * Tokens for a sub-agent (RFC 8693 delegation, docs/delegation.md): each is
   * this agent's token exchanged with the sub-agent's own token as actor, so
   * `sub` stays this agent and `act.sub` names the sub-agent, with the tools
   * and scopes of both at most (narrowed further by `capabilities`). This
   * agent must list the sub-agent in its registration's `delegates`. Hand the
   * source to the sub-agent (`new AegisClient({ issuer, gatewayUrl,
   * tokenSource })`); it refreshes by exchanging both current tokens again.
   * Close it when the work is done.
   */
  delegate(options: DelegateOptions): DelegationSource {
    const actor = options.to instanceof AegisClient ? options.to.tokenSource : options.to
    if (actor === this.tokenSource) throw new TypeError('an agent cannot delegate to itself')
    return this.delegationSource(this.tokenSource, undefined, actor, options)
  }

  /**
   * Tokens for this agent acting on behalf of a person (RFC 8693 §4.1): the
   * person's token from an identity provider the tenant trusts for people
   * (an OIDC ID token by default) is the subject, this agent's token the
   * actor. `sub` is the person, `act.sub` this agent; scopes and tools are no
   * wider than this agent's and what the tenant maps for that person.
   * `userToken` may be a function returning the person's current token.
   */
  actOnBehalfOf(userToken: string | (() => string | Promise<string>), options: ActOnBehalfOfOptions = {}): DelegationSource {
    return this.delegationSource(userToken, options.userTokenType ?? TOKEN_TYPE_ID_TOKEN, this.tokenSource, options)
  }

  private delegationSource(
    subject: TokenInput,
    subjectTokenType: string | undefined,
    actor: TokenInput,
    o: { capabilities?: string[]; scope?: string | string[]; audience?: string | string[]; ttl?: number },
  ): DelegationSource {
    const base = this.options
    return new DelegationSource({
      issuer: base.issuer,
      subject,
      ...(subjectTokenType !== undefined ? { subjectTokenType } : {}),
      actor,
      ...(o.capabilities !== undefined ? { capabilities: o.capabilities } : {}),
      ...(o.ttl !== undefined ? { ttlSeconds: o.ttl } : {}),
      scope: o.scope,
      audience: o.audience,
      tokenEndpoint: base.tokenEndpoint,
      controlPlaneUrls: base.controlPlaneUrls,
      refreshWindow: base.refreshWindow,
      retry: base.retry,
      onRefresh: base.onRefresh,
      clock: base.clock,
      scheduler: base.scheduler,
      random: base.random,
      fetch: base.fetch,
    })
  }

  /** Stops the token source's background refresh (when the client created it) and pending waits. */
  close(): void {
    this.sleeper.cancelAll(new AegisSdkError('closed', 'client is closed'))
    if (this.ownsSource) this.tokenSource.close()
  }

  /**
   * One decision request: one refresh+retry on invalid_token; an unreachable
   * gateway and 429 / 502 / 503 / 504 retried with backoff until `deadline`.
   */
  private async decide(url: string, body: string, headers: Record<string, string>, signal: AbortSignal, deadline: number): Promise<AuthorizeResult> {
    let refreshed = false
    for (let attempt = 0; ; attempt++) {
      const token = await this.tokenSource.getToken({ signal })
      let res: Response
      try {
        res = await this.fetchImpl(url, { method: 'POST', headers: { ...headers, authorization: `Bearer ${token}` }, body, redirect: 'error', signal })
      } catch (err) {
        if (signal.aborted) throw new AegisUnavailableError('timeout', 'authorize timed out or was aborted', { cause: err })
        // Refused or reset: a gateway restarting, or a blip. Asking again is safe: a claimed jti comes back as invalid_token, refreshed once.
        await this.retryPause(attempt, undefined, deadline, signal, new AegisUnavailableError('network_error', 'gateway unreachable', { cause: err }))
        continue
      }
      if (isInvalidToken(res) && !refreshed) {
        await res.body?.cancel().catch(() => {})
        this.tokenSource.invalidate(token)
        refreshed = true
        attempt--
        continue
      }
      const text = await readBounded(res, MAX_DECISION_BYTES).catch(() => {
        throw new AegisSdkError('invalid_response', 'gateway response unreadable', { status: res.status })
      })
      const json = parseJsonObject(text)
      if (RETRIED_STATUSES.has(res.status)) {
        const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), this.clock)
        const code = boundedText(json?.error, 100) ?? (res.status === 429 ? 'rate_limited' : 'temporarily_unavailable')
        const desc = boundedText(json?.error_description)
        await this.retryPause(
          attempt,
          retryAfterMs,
          deadline,
          signal,
          new AegisUnavailableError(code, desc ? `${code}: ${desc}` : `gateway answered ${res.status}`, { status: res.status, retryAfterMs }),
        )
        continue
      }
      if (res.status !== 200) {
        const code = boundedText(json?.error, 100) ?? (res.status >= 500 ? 'server_error' : 'invalid_request')
        const desc = boundedText(json?.error_description)
        const Err = res.status === 429 || res.status >= 500 ? AegisUnavailableError : AegisSdkError
        throw new Err(code, desc ? `${code}: ${desc}` : `gateway answered ${res.status}`, { status: res.status })
      }
      return toResult(json)
    }
  }

  private async waitForApproval(
    approval: ApprovalRef,
    deadline: number,
    signal: AbortSignal,
  ): Promise<{ status: 'approved'; overrideToken: string } | { status: 'denied' | 'expired' | 'timeout' }> {
    const statusUrl = this.resolveStatusUrl(approval.status_url)
    let refreshed = false
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - this.clock.now()
      if (remaining <= 0) return { status: 'timeout' }
      const token = await this.tokenSource.getToken()
      const sentAt = this.clock.now()
      let res: Response
      try {
        res = await this.fetchImpl(statusUrl, {
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'application/json',
            prefer: `wait=${Math.max(1, Math.floor(Math.min(remaining, LONG_POLL_MS) / 1000))}`,
          },
          redirect: 'error',
          signal: AbortSignal.any([signal, AbortSignal.timeout(Math.min(remaining, LONG_POLL_MS) + 5000)]),
        })
      } catch (err) {
        if (signal.aborted) {
          if (abortedByCaller(signal)) throw new AegisSdkError('aborted', 'authorize was aborted', { cause: err })
          return { status: 'timeout' }
        }
        // A dropped long poll or a blip: keep waiting, with backoff.
        if (!(await this.pause(attempt, undefined, deadline, signal))) return { status: 'timeout' }
        continue
      }
      if (isInvalidToken(res) && !refreshed) {
        await res.body?.cancel().catch(() => {})
        this.tokenSource.invalidate(token)
        refreshed = true
        continue
      }
      const text = await readBounded(res, MAX_STATUS_BYTES).catch(() => '')
      const retryAfter = parseRetryAfter(res.headers.get('retry-after'), this.clock)
      if (res.status === 429 || res.status >= 500) {
        if (!(await this.pause(attempt, retryAfter, deadline, signal))) return { status: 'timeout' }
        continue
      }
      const json = parseJsonObject(text)
      if (res.status !== 200 || !json || typeof json.status !== 'string' || !STATUSES.has(json.status)) {
        const code = boundedText(json?.error, 100) ?? 'invalid_response'
        throw new AegisSdkError(code, `approval status answered ${res.status}`, { status: res.status })
      }
      if (json.status === 'approved') {
        if (typeof json.override_token !== 'string' || json.override_token.length === 0)
          throw new AegisSdkError('invalid_response', 'approved without an override_token', { status: 200 })
        return { status: 'approved', overrideToken: json.override_token }
      }
      if (json.status === 'denied' || json.status === 'expired') return { status: json.status }
      refreshed = false
      // The server held the request (long poll): ask again at once; otherwise back off.
      const held = res.headers.has('preference-applied') && this.clock.now() - sentAt >= 1000
      if (held && retryAfter === undefined) {
        attempt = -1
        continue
      }
      if (!(await this.pause(attempt, retryAfter, deadline, signal))) return { status: 'timeout' }
    }
  }

  /**
   * Sleeps before asking the gateway again: exponential backoff with full
   * jitter, never shorter than `Retry-After`. Throws `err` instead when the
   * wait would end after `deadline` (the caller learns now, not at the deadline).
   */
  private async retryPause(
    attempt: number,
    retryAfterMs: number | undefined,
    deadline: number,
    signal: AbortSignal,
    err: AegisUnavailableError,
  ): Promise<void> {
    const delay = backoffDelay(attempt, GATEWAY_RETRY_BASE_MS, GATEWAY_RETRY_CAP_MS, this.random, retryAfterMs)
    if (this.clock.now() + delay >= deadline) throw err
    try {
      await this.sleeper.sleep(delay, signal)
    } catch (cause) {
      if (signal.aborted) throw new AegisUnavailableError('timeout', 'authorize timed out or was aborted', { cause })
      throw cause
    }
  }

  /** Sleeps before the next poll; false when the deadline would pass first. */
  private async pause(attempt: number, retryAfterMs: number | undefined, deadline: number, signal: AbortSignal): Promise<boolean> {
    const ceiling = Math.min(POLL_MAX_MS, POLL_MIN_MS * 1.5 ** attempt)
    const delay = Math.max(retryAfterMs ?? 0, POLL_MIN_MS / 2 + this.random() * (ceiling - POLL_MIN_MS / 2))
    if (this.clock.now() + delay >= deadline) return false
    try {
      await this.sleeper.sleep(delay, signal)
    } catch (err) {
      if (abortedByCaller(signal)) throw new AegisSdkError('aborted', 'authorize was aborted', { cause: err })
      if (signal.aborted) return false
      throw err
    }
    return true
  }

  /** The bearer token goes to status_url, so it may only point where we already send it. */
  private resolveStatusUrl(statusUrl: string): string {
    let u: URL
    try {
      u = new URL(statusUrl, this.gatewayUrl)
    } catch {
      throw new AegisSdkError('invalid_response', 'approval status_url is not a URL')
    }
    if (!this.approvalOrigins.has(u.origin)) throw new AegisSdkError('approval_url_untrusted', `approval status_url points at an untrusted origin ${u.origin}`)
    return u.toString()
  }
}

function abortedByCaller(signal: AbortSignal): boolean {
  const reason: unknown = signal.reason
  return !(reason instanceof DOMException && reason.name === 'TimeoutError')
}

function toResult(json: Record<string, unknown> | undefined): AuthorizeResult {
  // Fail closed: anything that is not a well-formed decision is an error, never an allow.
  if (!json || typeof json.decision !== 'string' || !DECISIONS.has(json.decision))
    throw new AegisSdkError('invalid_response', 'gateway answered without a valid decision', { status: 200 })
  const reasons = Array.isArray(json.reasons) ? json.reasons.filter((r): r is string => typeof r === 'string') : []
  const obligations = Array.isArray(json.obligations)
    ? json.obligations.filter((o): o is Obligation => o !== null && typeof o === 'object' && typeof (o as { type?: unknown }).type === 'string')
    : []
  const approval = json.approval
  let approvalRef: ApprovalRef | undefined
  if (
    approval &&
    typeof approval === 'object' &&
    typeof (approval as { id?: unknown }).id === 'string' &&
    typeof (approval as { status_url?: unknown }).status_url === 'string'
  ) {
    approvalRef = { id: (approval as { id: string }).id, status_url: (approval as { status_url: string }).status_url }
  }
  const params = json.params && typeof json.params === 'object' && !Array.isArray(json.params) ? (json.params as Record<string, unknown>) : undefined
  return {
    ...json,
    decision: json.decision as Decision,
    reasons,
    obligations,
    ...(typeof json.policy_version === 'string' ? { policy_version: json.policy_version } : {}),
    ...(params ? { params } : {}),
    ...(approvalRef ? { approval: approvalRef } : { approval: undefined }),
    enforced: json.enforced !== false,
  }
}

function isInvalidToken(res: Response): boolean {
  return res.status === 401 && bearerChallengeError(res.headers.get('www-authenticate')) === 'invalid_token'
}

function isStreamBody(body: RequestInit['body'] | undefined): boolean {
  if (body === undefined || body === null) return false
  if (
    typeof body === 'string' ||
    body instanceof URLSearchParams ||
    body instanceof Blob ||
    body instanceof FormData ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body)
  )
    return false
  return true
}

function withBearer(input: string | URL | Request, init: RequestInit | undefined, token: string): RequestInit {
  const headers = new Headers(input instanceof Request ? input.headers : undefined)
  if (init?.headers) {
    for (const [k, v] of new Headers(init.headers)) headers.set(k, v)
  }
  headers.set('authorization', `Bearer ${token}`)
  return { ...init, headers }
}
