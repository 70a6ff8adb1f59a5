/**
 * Token sources: get an access token from the Aegis token endpoint with some
 * grant, cache it, refresh it early at a random point of its lifetime, one
 * refresh at a time, retrying what is worth retrying.
 */
import { AegisAuthError, AegisSdkError, AegisUnavailableError } from './errors.js'
import {
  type FetchLike,
  type Scheduler,
  type SdkClock,
  type TimerHandle,
  Sleeper,
  backoffDelay,
  boundedText,
  parseJsonObject,
  parseRetryAfter,
  readBounded,
  systemClock,
  systemScheduler,
  unrefTimer,
} from './runtime.js'

/** An access token as the SDK caches it. */
export interface AccessToken {
  /** The token. Treat as a secret: never log it. */
  readonly accessToken: string
  /** `Bearer`, or `DPoP` for a DPoP-bound token (present it with credentials/dpop.ts's fetch). */
  readonly tokenType: string
  /** When it stops being valid, epoch milliseconds of the source's clock (request time + `expires_in`). */
  readonly expiresAt: number
  /** When the source refreshes it, epoch milliseconds: a random point of the refresh window. */
  readonly refreshAt: number
  /** Granted scope (space-separated), if the server said. */
  readonly scope: string | undefined
  /** `issued_token_type` (RFC 8693 §2.2.1), for token exchange. */
  readonly issuedTokenType: string | undefined
}

/** Options of {@link TokenSource.getToken}. */
export interface GetTokenOptions {
  /**
   * Fetch a new token even if the cached one looks valid (joins a refresh
   * already in flight rather than starting a second one).
   */
  forceRefresh?: boolean
  /**
   * The caller's deadline: when it aborts, this call stops waiting (rejects
   * with {@link AegisUnavailableError} `timeout`, or {@link AegisSdkError}
   * `aborted` for another reason), while the refresh it joined goes on for
   * the other callers. E.g. `AbortSignal.timeout(2000)`.
   */
  signal?: AbortSignal
}

/**
 * Anything that hands out access tokens. {@link AegisClient} takes one, so a
 * grant other than client credentials (token exchange, mTLS,
 * `private_key_jwt`, DPoP) plugs in without touching the client.
 */
export interface TokenSource {
  /** A valid access token (cached until its refresh point). */
  getToken(options?: GetTokenOptions): Promise<string>
  /** Same as {@link TokenSource.getToken}, with its metadata. */
  getAccessToken(options?: GetTokenOptions): Promise<AccessToken>
  /**
   * Marks `token` as refused by a resource server (`invalid_token`), so the
   * next `getToken` fetches a fresh one. A no-op when `token` is no longer
   * the cached one (someone already replaced it).
   */
  invalidate(token: string): void
  /** Stops background refresh, cancels pending retries and forgets the token. */
  close(): void
}

/** What one token request attempt came to, for {@link OAuthTokenSourceOptions.onRefresh}. Never contains the token. */
export interface RefreshInfo {
  /** `success`, `retry` (failed, will retry after `delayMs`) or `failure` (gave up). */
  readonly outcome: 'success' | 'retry' | 'failure'
  /** When the attempt started, epoch ms of the source's clock. */
  readonly startedAt: number
  /** 0 for the first attempt of a refresh, 1 for its first retry, … */
  readonly attempt: number
  /** True when a still-valid token was being refreshed ahead of time (nobody waited). */
  readonly background: boolean
  /** For `success`: the new token's expiry and refresh point (epoch ms). */
  readonly expiresAt?: number
  readonly refreshAt?: number
  /** For `retry`/`failure`: error code and HTTP status, if any. */
  readonly code?: string
  readonly status?: number
  /** For `retry`: how long the source waits before the next attempt (ms); 0 when failing over to the next endpoint. */
  readonly delayMs?: number
  /** The token endpoint this attempt went to (with several, see {@link OAuthTokenSourceOptions.controlPlaneUrls}). */
  readonly endpoint?: string
}

/** Retry tuning for token requests. */
export interface RetryOptions {
  /**
   * Attempts per refresh, including the first. Default 5. With several
   * token endpoints one attempt tries each of them once before backing off.
   */
  maxAttempts?: number
  /** First backoff ceiling, ms. Default 250. */
  baseDelayMs?: number
  /**
   * Largest backoff ceiling, ms. Default 30 000. A `Retry-After` longer than
   * this ends the refresh at once with {@link AegisUnavailableError}
   * (`retryAfterMs` says how long the server asked for) instead of keeping
   * callers waiting; a still-valid token keeps being served meanwhile.
   */
  maxDelayMs?: number
}

/** Options shared by every token source that talks to an OAuth token endpoint. */
export interface OAuthTokenSourceOptions {
  /** The Aegis issuer URL (`iss` of its tokens), e.g. `http://127.0.0.1:7400`. */
  issuer: string
  /**
   * Token endpoint; when absent it is discovered from RFC 8414 metadata and
   * cached. Several endpoints (the same authorization server reached at
   * several addresses) are used as {@link controlPlaneUrls} are.
   */
  tokenEndpoint?: string | readonly string[]
  /**
   * Base URLs of several Aegis control planes serving this issuer (e.g.
   * `['https://cp-a.internal:7400', 'https://cp-b.internal:7400']`), for
   * failover: token requests go to `{url}/oauth2/token` of the one that
   * answered last, and on to the next when it is unreachable or answers
   * 5xx; once every one has failed, the source backs off (never less than
   * `Retry-After`) and tries them all again. A `429` is waited out on the
   * same control plane. `issuer` stays the tokens' `iss`. Not with
   * `tokenEndpoint`.
   */
  controlPlaneUrls?: readonly string[]
  /** Requested scope: space-separated string or list (subset of the agent's scopes). */
  scope?: string | string[]
  /** Requested audience(s) (RFC 8693 / RFC 8707 spelling `audience`). */
  audience?: string | string[]
  /**
   * Fraction of the token's lifetime between which the refresh point is drawn
   * uniformly, so a fleet started together never refreshes together.
   * Default `[0.6, 0.85]`.
   */
  refreshWindow?: [number, number]
  /**
   * Refresh on a timer at the refresh point even when nobody asks for a token
   * (timers are unref'd: they never keep the process alive). Default true.
   * When false, a `getToken` inside the window starts the refresh and still
   * returns the current token.
   */
  backgroundRefresh?: boolean
  /** Retry tuning for 429 / 5xx / network errors. */
  retry?: RetryOptions
  /** Per-request timeout, ms. Default 10 000. */
  requestTimeoutMs?: number
  /** Time source (epoch ms). Default: the wall clock. */
  clock?: SdkClock
  /** Uniform random in [0, 1). Default `Math.random`. */
  random?: () => number
  /** Timers for background refresh and backoff. Default: Node's. */
  scheduler?: Scheduler
  /** `fetch` implementation. Default: the global one. */
  fetch?: FetchLike
  /** Called after every token request attempt. Exceptions it throws are ignored. */
  onRefresh?: (info: RefreshInfo) => void
}

/** What a subclass contributes to a token request. */
export interface TokenRequest {
  /** Form parameters (grant-specific, plus client authentication in the body if any). */
  readonly params: URLSearchParams
  /** Extra headers (e.g. `Authorization: Basic …`). */
  readonly headers: Record<string, string>
}

const MAX_RESPONSE_BYTES = 64 * 1024
const MAX_TOKEN_CHARS = 16 * 1024
const DEFAULT_WINDOW: [number, number] = [0.6, 0.85]
const MAX_TIMER_MS = 2_147_483_647

interface CachedToken extends AccessToken {
  invalidated: boolean
  readonly marginMs: number
}

class RetryableError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/**
 * The refresh machinery shared by every grant: cache, jittered early refresh,
 * single flight, backoff with full jitter honouring `Retry-After`, and
 * riding out an unreachable control plane on a still-valid token.
 * Subclasses only say what goes into the token request.
 */
export abstract class OAuthTokenSource implements TokenSource {
  /** The issuer this source gets tokens from. */
  readonly issuer: string
  /** Where token requests go (undefined until discovered); `preferred` is the one that answered last. */
  private endpoints: string[] | undefined
  private preferred = 0
  private readonly scope: string | undefined
  private readonly audiences: string[]
  private readonly window: [number, number]
  private readonly backgroundRefresh: boolean
  private readonly maxAttempts: number
  private readonly baseDelayMs: number
  private readonly maxDelayMs: number
  private readonly requestTimeoutMs: number
  private readonly clock: SdkClock
  private readonly random: () => number
  private readonly scheduler: Scheduler
  private readonly fetchImpl: FetchLike
  private readonly onRefresh: ((info: RefreshInfo) => void) | undefined
  private readonly sleeper: Sleeper

  private current: CachedToken | undefined
  private inflight: Promise<CachedToken> | undefined
  private timer: TimerHandle | undefined
  private failures = 0
  private nextAttemptAt = 0
  private closed = false

  protected constructor(options: OAuthTokenSourceOptions) {
    if (typeof options.issuer !== 'string' || !isHttpUrl(options.issuer)) throw new TypeError('issuer must be an http(s) URL')
    this.endpoints = endpointsOf(options)
    const [lo, hi] = options.refreshWindow ?? DEFAULT_WINDOW
    if (!(lo > 0 && lo <= hi && hi < 1)) throw new RangeError('refreshWindow must satisfy 0 < low <= high < 1')
    this.issuer = options.issuer
    this.scope = Array.isArray(options.scope) ? options.scope.join(' ') : options.scope
    this.audiences = options.audience === undefined ? [] : Array.isArray(options.audience) ? [...options.audience] : [options.audience]
    this.window = [lo, hi]
    this.backgroundRefresh = options.backgroundRefresh ?? true
    this.maxAttempts = Math.max(1, options.retry?.maxAttempts ?? 5)
    this.baseDelayMs = options.retry?.baseDelayMs ?? 250
    this.maxDelayMs = options.retry?.maxDelayMs ?? 30_000
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000
    this.clock = options.clock ?? systemClock
    this.random = options.random ?? Math.random
    this.scheduler = options.scheduler ?? systemScheduler
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init))
    this.onRefresh = options.onRefresh
    this.sleeper = new Sleeper(this.scheduler)
  }

  /** Grant-specific parameters and client authentication. Called once per attempt. */
  protected abstract tokenRequest(): Promise<TokenRequest>

  async getToken(options?: GetTokenOptions): Promise<string> {
    return (await this.getAccessToken(options)).accessToken
  }

  async getAccessToken(options?: GetTokenOptions): Promise<AccessToken> {
    if (this.closed) throw new AegisSdkError('closed', 'token source is closed')
    const now = this.clock.now()
    const cur = this.current
    if (cur && !options?.forceRefresh && usable(cur, now)) {
      if (now >= cur.refreshAt && now >= this.nextAttemptAt) this.refresh(true).catch(() => {})
      return publicView(cur)
    }
    const refreshing = this.refresh(false)
    return publicView(await (options?.signal ? untilAborted(refreshing, options.signal) : refreshing))
  }

  invalidate(token: string): void {
    if (this.current && this.current.accessToken === token) this.current.invalidated = true
  }

  close(): void {
    this.closed = true
    if (this.timer !== undefined) this.scheduler.clearTimeout(this.timer)
    this.timer = undefined
    this.current = undefined
    this.sleeper.cancelAll(new AegisSdkError('closed', 'token source is closed'))
  }

  /** Single flight: every caller shares the refresh already running. */
  private refresh(background: boolean): Promise<CachedToken> {
    this.inflight ??= this.refreshWithRetry(background).finally(() => {
      this.inflight = undefined
    })
    return this.inflight
  }

  private async refreshWithRetry(background: boolean): Promise<CachedToken> {
    for (let attempt = 0; ; attempt++) {
      let startedAt = this.clock.now()
      try {
        // One attempt tries each endpoint once, the one that answered last first.
        const count = this.endpoints?.length ?? 1
        for (let k = 0; ; k++) {
          const index = (this.preferred + k) % count
          startedAt = this.clock.now()
          let token: CachedToken
          try {
            token = await this.requestOnce(startedAt, index)
          } catch (err) {
            // Another control plane may answer: unreachable or 5xx here says nothing about there. A 429 is this client's, everywhere.
            if (this.closed || !(err instanceof RetryableError) || err.code === 'rate_limited' || k + 1 >= count) throw err
            this.emit({ outcome: 'retry', startedAt, attempt, background, code: err.code, status: err.status, delayMs: 0, endpoint: this.endpoints?.[index] })
            continue
          }
          if (this.closed) throw new AegisSdkError('closed', 'token source is closed')
          this.preferred = index
          this.current = token
          this.failures = 0
          this.nextAttemptAt = 0
          this.schedule(token.refreshAt)
          this.emit({
            outcome: 'success',
            startedAt,
            attempt,
            background,
            expiresAt: token.expiresAt,
            refreshAt: token.refreshAt,
            endpoint: this.endpoints?.[index],
          })
          return token
        }
      } catch (err) {
        if (this.closed) throw err instanceof AegisSdkError && err.code === 'closed' ? err : new AegisSdkError('closed', 'token source is closed')
        const retryable = err instanceof RetryableError
        // A Retry-After longer than the largest backoff fails now (callers are waiting) rather than hanging them.
        if (retryable && attempt + 1 < this.maxAttempts && (err.retryAfterMs ?? 0) <= this.maxDelayMs) {
          const delayMs = backoffDelay(attempt, this.baseDelayMs, this.maxDelayMs, this.random, err.retryAfterMs)
          this.emit({ outcome: 'retry', startedAt, attempt, background, code: err.code, status: err.status, delayMs })
          await this.sleeper.sleep(delayMs)
          continue
        }
        const final = retryable
          ? new AegisUnavailableError(err.code, err.message, { status: err.status, retryAfterMs: err.retryAfterMs, cause: err.cause })
          : err
        this.emit({
          outcome: 'failure',
          startedAt,
          attempt,
          background,
          code: final instanceof AegisSdkError ? final.code : 'error',
          status: final instanceof AegisSdkError ? final.status : undefined,
        })
        this.afterFailure(retryable ? err.retryAfterMs : undefined)
        throw final
      }
    }
  }

  /**
   * After a refresh gave up: keep the still-valid token and try again later,
   * backing off further with each failed refresh, but never so late that
   * the token lapses without a last attempt.
   */
  private afterFailure(retryAfterMs: number | undefined): void {
    this.failures++
    const now = this.clock.now()
    const cur = this.current
    const delay = backoffDelay(Math.min(this.failures, 16), Math.max(this.baseDelayMs, 1000), this.maxDelayMs, this.random, retryAfterMs)
    this.nextAttemptAt = now + Math.max(delay, this.baseDelayMs)
    if (!cur || !usable(cur, now)) return
    // However long the backoff, one more attempt happens while the token is still usable.
    const lastChance = cur.expiresAt - cur.marginMs - 1
    this.schedule(lastChance > now ? Math.min(this.nextAttemptAt, lastChance) : this.nextAttemptAt)
  }

  private schedule(at: number): void {
    if (!this.backgroundRefresh || this.closed) return
    if (this.timer !== undefined) this.scheduler.clearTimeout(this.timer)
    // Node fires timers longer than 2^31-1 ms at once; a long-lived token re-arms instead.
    this.timer = this.scheduler.setTimeout(
      () => {
        this.timer = undefined
        if (this.closed) return
        if (this.clock.now() < at) {
          this.schedule(at)
          return
        }
        const cur = this.current
        if (cur && !usable(cur, this.clock.now())) return // the next getToken refreshes in the foreground
        this.refresh(true).catch(() => {})
      },
      Math.min(MAX_TIMER_MS, Math.max(0, at - this.clock.now())),
    )
    unrefTimer(this.timer)
  }

  private emit(info: RefreshInfo): void {
    if (!this.onRefresh) return
    // A broken observer must not break token refresh; the SDK has nowhere to log it.
    try {
      this.onRefresh(info)
    } catch {
      /* ignored by contract */
    }
  }

  private async requestOnce(sentAt: number, index: number): Promise<CachedToken> {
    const endpoint = this.endpoints?.[index] ?? (await this.discover())
    const { params, headers } = await this.tokenRequest()
    if (this.scope !== undefined && !params.has('scope')) params.set('scope', this.scope)
    if (!params.has('audience')) for (const aud of this.audiences) params.append('audience', aud)
    let res: Response
    try {
      res = await this.fetchImpl(endpoint, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: params.toString(),
        // A redirect would carry client credentials to a place nobody configured.
        redirect: 'error',
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      })
    } catch (err) {
      throw new RetryableError('network_error', `token endpoint unreachable: ${errorName(err)}`, undefined, undefined, { cause: sanitizeCause(err) })
    }
    let text: string
    try {
      text = await readBounded(res, MAX_RESPONSE_BYTES)
    } catch (err) {
      if (err instanceof RangeError) throw new AegisSdkError('invalid_response', 'token response too large', { status: res.status })
      throw new RetryableError('network_error', `token response interrupted: ${errorName(err)}`, res.status)
    }
    const body = parseJsonObject(text)
    if (res.status === 429 || res.status >= 500) {
      const code = res.status === 429 ? 'rate_limited' : res.status === 503 ? 'temporarily_unavailable' : 'server_error'
      throw new RetryableError(code, `token endpoint answered ${res.status}`, res.status, parseRetryAfter(res.headers.get('retry-after'), this.clock))
    }
    if (res.status !== 200) {
      const code = boundedText(body?.error, 100) ?? (res.status === 401 ? 'invalid_client' : 'invalid_request')
      throw new AegisAuthError(code, boundedText(body?.error_description), res.status)
    }
    return this.toCachedToken(body, sentAt)
  }

  private toCachedToken(body: Record<string, unknown> | undefined, sentAt: number): CachedToken {
    const token = body?.access_token
    const type = body?.token_type
    const expiresIn = body?.expires_in
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS)
      throw new AegisSdkError('invalid_response', 'token response has no usable access_token', { status: 200 })
    // DPoP (RFC 9449 §5) when the request carried a proof (see credentials/dpop.ts).
    const kind = typeof type === 'string' ? type.toLowerCase() : ''
    // A DPoP token is usable only by a fetch that holds the key (credentials/dpop.ts marks its fetch).
    const dpopCapable = (this.fetchImpl as { aegisDpop?: unknown }).aegisDpop === true
    if (kind !== 'bearer' && !(kind === 'dpop' && dpopCapable))
      throw new AegisSdkError('invalid_response', 'token response token_type is not Bearer or DPoP', { status: 200 })
    if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0)
      throw new AegisSdkError('invalid_response', 'token response has no positive expires_in', { status: 200 })
    const lifetime = expiresIn * 1000
    const [lo, hi] = this.window
    const fraction = lo + this.random() * (hi - lo)
    return {
      accessToken: token,
      tokenType: kind === 'dpop' ? 'DPoP' : 'Bearer',
      // Measured from when the request was sent, so network time only makes us early.
      expiresAt: sentAt + lifetime,
      refreshAt: sentAt + Math.floor(lifetime * fraction),
      scope: typeof body?.scope === 'string' ? body.scope : undefined,
      issuedTokenType: typeof body?.issued_token_type === 'string' ? body.issued_token_type : undefined,
      invalidated: false,
      marginMs: Math.min(5000, lifetime / 10),
    }
  }

  /** RFC 8414 discovery of the token endpoint, cached for the source's life. */
  private async discover(): Promise<string> {
    const url = wellKnownUrl(this.issuer)
    let res: Response
    try {
      res = await this.fetchImpl(url, { headers: { accept: 'application/json' }, redirect: 'error', signal: AbortSignal.timeout(this.requestTimeoutMs) })
    } catch (err) {
      throw new RetryableError('network_error', `authorization server metadata unreachable: ${errorName(err)}`, undefined, undefined, {
        cause: sanitizeCause(err),
      })
    }
    let text: string
    try {
      text = await readBounded(res, MAX_RESPONSE_BYTES)
    } catch {
      throw new AegisSdkError('discovery_failed', 'authorization server metadata unreadable', { status: res.status })
    }
    if (res.status === 429 || res.status >= 500) {
      throw new RetryableError(
        res.status === 429 ? 'rate_limited' : 'temporarily_unavailable',
        `metadata endpoint answered ${res.status}`,
        res.status,
        parseRetryAfter(res.headers.get('retry-after'), this.clock),
      )
    }
    const body = parseJsonObject(text)
    if (res.status !== 200 || !body) throw new AegisSdkError('discovery_failed', `authorization server metadata answered ${res.status}`, { status: res.status })
    // RFC 8414 §3.3: metadata for another issuer must not be used.
    if (typeof body.issuer !== 'string' || stripSlash(body.issuer) !== stripSlash(this.issuer))
      throw new AegisSdkError('discovery_failed', 'authorization server metadata names a different issuer')
    if (typeof body.token_endpoint !== 'string' || !isHttpUrl(body.token_endpoint))
      throw new AegisSdkError('discovery_failed', 'authorization server metadata has no token_endpoint')
    this.endpoints = [body.token_endpoint]
    return body.token_endpoint
  }
}

/** Authentication method at the token endpoint (RFC 7591 names). */
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post'

/** Options of {@link ClientCredentialsSource}. */
export interface ClientCredentialsSourceOptions extends OAuthTokenSourceOptions {
  /** The bootstrap credential's `client_id`. */
  clientId: string
  /** The bootstrap credential's `client_secret`. Never logged, never in an error. */
  clientSecret: string
  /** How to present the secret. Default `client_secret_basic` (RFC 6749 §2.3.1). */
  authMethod?: ClientAuthMethod
}

/**
 * `client_credentials` grant (RFC 6749 §4.4) with a bootstrap credential.
 *
 * @example
 * const source = new ClientCredentialsSource({ issuer, clientId, clientSecret })
 * const token = await source.getToken()
 */
export class ClientCredentialsSource extends OAuthTokenSource {
  readonly #clientId: string
  readonly #clientSecret: string
  readonly #authMethod: ClientAuthMethod

  constructor(options: ClientCredentialsSourceOptions) {
    super(options)
    if (typeof options.clientId !== 'string' || options.clientId.length === 0) throw new TypeError('clientId is required')
    if (typeof options.clientSecret !== 'string' || options.clientSecret.length === 0) throw new TypeError('clientSecret is required')
    const method = options.authMethod ?? 'client_secret_basic'
    if (method !== 'client_secret_basic' && method !== 'client_secret_post') throw new TypeError('authMethod must be client_secret_basic or client_secret_post')
    this.#clientId = options.clientId
    this.#clientSecret = options.clientSecret
    this.#authMethod = method
  }

  protected async tokenRequest(): Promise<TokenRequest> {
    const params = new URLSearchParams({ grant_type: 'client_credentials' })
    return { params, headers: clientAuth(params, this.#authMethod, this.#clientId, this.#clientSecret) }
  }
}

/** RFC 8693 token type of a JWT subject token. */
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt'

/** Options of {@link TokenExchangeSource}. */
export interface TokenExchangeSourceOptions extends OAuthTokenSourceOptions {
  /**
   * The workload identity token (Kubernetes service account token, CI OIDC
   * token, SPIFFE JWT-SVID), or a function returning the current one (such
   * tokens rotate; a projected service-account token file is re-read).
   */
  subjectToken: string | (() => string | Promise<string>)
  /** `subject_token_type`. Default `urn:ietf:params:oauth:token-type:jwt`. */
  subjectTokenType?: string
  /** Optional client identification/authentication alongside the subject token. */
  clientId?: string
  clientSecret?: string
  authMethod?: ClientAuthMethod
}

/**
 * Token exchange (RFC 8693) of a workload identity token from a trusted
 * issuer for an Aegis access token: no bootstrap secret on the workload.
 */
export class TokenExchangeSource extends OAuthTokenSource {
  readonly #subject: string | (() => string | Promise<string>)
  readonly #subjectType: string
  readonly #clientId: string | undefined
  readonly #clientSecret: string | undefined
  readonly #authMethod: ClientAuthMethod

  constructor(options: TokenExchangeSourceOptions) {
    super(options)
    if (typeof options.subjectToken !== 'function' && (typeof options.subjectToken !== 'string' || options.subjectToken.length === 0))
      throw new TypeError('subjectToken is required')
    this.#subject = options.subjectToken
    this.#subjectType = options.subjectTokenType ?? TOKEN_TYPE_JWT
    this.#clientId = options.clientId
    this.#clientSecret = options.clientSecret
    this.#authMethod = options.authMethod ?? 'client_secret_basic'
  }

  protected async tokenRequest(): Promise<TokenRequest> {
    const subject = typeof this.#subject === 'function' ? await this.#subject() : this.#subject
    if (typeof subject !== 'string' || subject.length === 0) throw new AegisSdkError('invalid_request', 'subjectToken provider returned no token')
    const params = new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: subject,
      subject_token_type: this.#subjectType,
    })
    if (this.#clientId === undefined) return { params, headers: {} }
    if (this.#clientSecret === undefined) {
      params.set('client_id', this.#clientId)
      return { params, headers: {} }
    }
    return { params, headers: clientAuth(params, this.#authMethod, this.#clientId, this.#clientSecret) }
  }
}

function clientAuth(params: URLSearchParams, method: ClientAuthMethod, id: string, secret: string): Record<string, string> {
  if (method === 'client_secret_post') {
    params.set('client_id', id)
    params.set('client_secret', secret)
    return {}
  }
  // RFC 6749 §2.3.1: form-encode each part before base64.
  const basic = Buffer.from(`${formEncode(id)}:${formEncode(secret)}`).toString('base64')
  return { authorization: `Basic ${basic}` }
}

function formEncode(v: string): string {
  return new URLSearchParams({ v }).toString().slice(2)
}

/** The configured token endpoints, or undefined (discover). Throws TypeError on a bad option. */
function endpointsOf(options: OAuthTokenSourceOptions): string[] | undefined {
  const { tokenEndpoint, controlPlaneUrls } = options
  if (tokenEndpoint !== undefined && controlPlaneUrls !== undefined) throw new TypeError('give tokenEndpoint or controlPlaneUrls, not both')
  let list: string[] | undefined
  if (controlPlaneUrls !== undefined) {
    if (!Array.isArray(controlPlaneUrls) || controlPlaneUrls.length === 0) throw new TypeError('controlPlaneUrls must be a non-empty list of http(s) URLs')
    for (const u of controlPlaneUrls)
      if (typeof u !== 'string' || !isHttpUrl(u)) throw new TypeError('controlPlaneUrls must be a non-empty list of http(s) URLs')
    // docs/reference.md fixes the token endpoint's path on every control plane.
    list = controlPlaneUrls.map((u) => `${stripSlash(u)}/oauth2/token`)
  } else if (tokenEndpoint !== undefined) {
    list = typeof tokenEndpoint === 'string' ? [tokenEndpoint] : [...tokenEndpoint]
    if (list.length === 0 || list.some((u) => typeof u !== 'string' || !isHttpUrl(u)))
      throw new TypeError('tokenEndpoint must be an http(s) URL or a non-empty list of them')
  }
  return list === undefined ? undefined : [...new Set(list)]
}

/** Waits for `p` unless `signal` aborts first; `p` goes on (its rejection is not left unhandled). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  p.catch(() => {})
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortedWaiting(signal))
    if (signal.aborted) {
      onAbort()
      return
    }
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

function abortedWaiting(signal: AbortSignal): Error {
  const reason: unknown = signal.reason
  if (reason instanceof DOMException && reason.name === 'TimeoutError') return new AegisUnavailableError('timeout', "no token before the caller's deadline")
  return new AegisSdkError('aborted', 'waiting for a token was aborted')
}

function usable(t: CachedToken, now: number): boolean {
  return !t.invalidated && now < t.expiresAt - t.marginMs
}

function publicView(t: CachedToken): AccessToken {
  return {
    accessToken: t.accessToken,
    tokenType: t.tokenType,
    expiresAt: t.expiresAt,
    refreshAt: t.refreshAt,
    scope: t.scope,
    issuedTokenType: t.issuedTokenType,
  }
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v)
    return u.protocol === 'https:' || u.protocol === 'http:'
  } catch {
    return false
  }
}

function stripSlash(v: string): string {
  return v.endsWith('/') ? v.slice(0, -1) : v
}

/** RFC 8414 §3.1: the well-known segment goes between host and the issuer's path. */
export function wellKnownUrl(issuer: string): string {
  const u = new URL(issuer)
  const path = stripSlash(u.pathname)
  return `${u.origin}/.well-known/oauth-authorization-server${path}`
}

function errorName(err: unknown): string {
  if (err instanceof Error) {
    const code = (err.cause as { code?: unknown } | undefined)?.code
    return typeof code === 'string' ? code : err.name
  }
  return 'error'
}

/** Keeps the cause's class and code but not its message (which could echo a request). */
function sanitizeCause(err: unknown): Error {
  const e = new Error(errorName(err))
  e.name = err instanceof Error ? err.name : 'Error'
  return e
}
