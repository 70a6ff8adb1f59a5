import { type AegisError, Unavailable } from '../errors.js'

/** Bounds on what the gateway reads from the control plane. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024

/**
 * The gateway's HTTP client for the control plane's `/admin/v1/` endpoints,
 * authenticated with the gateway bearer token (docs/reference.md "Gateway").
 */
export class ControlPlaneClient {
  private readonly authorization: string

  constructor(
    readonly baseUrl: string,
    token: string,
    private readonly timeoutMs = 5_000,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '')
    this.authorization = `Bearer ${token}`
  }

  /** Absolute URL of a control-plane path. */
  url(path: string): string {
    return this.baseUrl + path
  }

  /** Request headers for a streaming call (SSE). Never logged. */
  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: this.authorization, ...extra }
  }

  /** GET JSON; rejects with `temporarily_unavailable` on network errors and non-2xx answers (status in the message). */
  async getJson(path: string, timeoutMs = this.timeoutMs): Promise<unknown> {
    return this.call('GET', path, undefined, timeoutMs)
  }

  /** POST JSON; same failure rules as getJson. */
  async postJson(path: string, body: unknown, timeoutMs = this.timeoutMs): Promise<unknown> {
    return this.call('POST', path, body, timeoutMs)
  }

  private async call(method: string, path: string, body: unknown, timeoutMs: number): Promise<unknown> {
    let res: Response
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers:
          body === undefined
            ? { authorization: this.authorization, accept: 'application/json' }
            : { authorization: this.authorization, accept: 'application/json', 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (err) {
      throw new Unavailable(`control plane unreachable (${method} ${path})`, { cause: err })
    }
    const text = await res.text()
    if (text.length > MAX_RESPONSE_BYTES) throw new Unavailable(`control plane answer too large (${method} ${path})`)
    if (!res.ok) {
      const err = new Unavailable(`control plane answered ${res.status} (${method} ${path})`)
      ;(err as AegisError & { upstreamStatus?: number }).upstreamStatus = res.status
      throw err
    }
    if (text === '') return null
    try {
      return JSON.parse(text) as unknown
    } catch (err) {
      throw new Unavailable(`control plane answered malformed JSON (${method} ${path})`, { cause: err })
    }
  }
}
