/**
 * mTLS (RFC 8705) on the agent side: a `fetch` that presents a client
 * certificate (node:https with a keep-alive agent, so the SDK needs no
 * dependency), a token source for `tls_client_auth`, and discovery of the
 * token endpoint's mTLS alias. Tokens obtained over mTLS are bound to the
 * certificate: use the same `fetch` at the gateway's TLS port.
 */
import { Agent, request } from 'node:https'
import { readFileSync } from 'node:fs'
import type { FetchLike } from '../runtime.js'
import { OAuthTokenSource, wellKnownUrl, type OAuthTokenSourceOptions, type TokenRequest } from '../token-source.js'

export interface ClientCertificate {
  /** PEM certificate (chain) or a file path to one. */
  cert: string
  /** PEM private key or a file path to one. Never logged. */
  key: string
  /** PEM CA bundle (or file path) trusted for the server; default the system's. */
  ca?: string
}

/** A `fetch` over a client-certificate agent, with `close()` to end its connections. */
export interface MtlsFetch extends FetchLike {
  close(): void
}

function pem(v: string): string {
  return v.includes('-----BEGIN') ? v : readFileSync(v, 'utf8')
}

const MAX_BODY = 4 * 1024 * 1024

/** A `fetch` presenting the client certificate on every https request (string/URL input; body as string, bytes or URLSearchParams). */
export function mtlsFetch(cc: ClientCertificate): MtlsFetch {
  const agent = new Agent({ keepAlive: true, cert: pem(cc.cert), key: pem(cc.key), ...(cc.ca ? { ca: pem(cc.ca) } : {}) })
  const f = ((input: string | URL | Request, init?: RequestInit): Promise<Response> =>
    new Promise((resolve, reject) => {
      if (input instanceof Request) {
        reject(new TypeError('mtlsFetch takes a URL, not a Request'))
        return
      }
      const url = new URL(input.toString())
      if (url.protocol !== 'https:') {
        reject(new TypeError('mtlsFetch needs an https URL'))
        return
      }
      const headers: Record<string, string> = {}
      new Headers(init?.headers).forEach((v, k) => {
        headers[k] = v
      })
      const body = init?.body
      let data: Buffer | undefined
      if (typeof body === 'string' || body instanceof URLSearchParams) data = Buffer.from(body.toString())
      else if (body instanceof Uint8Array) data = Buffer.from(body)
      else if (body != null) {
        reject(new TypeError('mtlsFetch: unsupported body type'))
        return
      }
      if (data && body instanceof URLSearchParams && !headers['content-type']) headers['content-type'] = 'application/x-www-form-urlencoded'
      if (data) headers['content-length'] = String(data.length)
      const req = request(url, { method: init?.method ?? 'GET', headers, agent, ...(init?.signal ? { signal: init.signal } : {}) }, (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (c: Buffer) => {
          size += c.length
          if (size > MAX_BODY) {
            res.destroy(new RangeError('response too large'))
            return
          }
          chunks.push(c)
        })
        res.on('error', reject)
        res.on('end', () => {
          const h = new Headers()
          for (const [k, v] of Object.entries(res.headers)) {
            if (v === undefined) continue
            for (const x of Array.isArray(v) ? v : [v]) h.append(k, x)
          }
          const status = res.statusCode ?? 500
          const nullBody = status === 204 || status === 304
          resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: h }))
        })
      })
      req.on('error', reject)
      if (data) req.write(data)
      req.end()
    })) as MtlsFetch
  f.close = () => agent.destroy()
  return f
}

/** Options of {@link TlsClientAuthSource}. */
export interface TlsClientAuthSourceOptions extends OAuthTokenSourceOptions {
  /** The agent's client id (`ag_…`). */
  clientId: string
  /**
   * The mTLS alias of the token endpoint (`mtls_endpoint_aliases.token_endpoint`);
   * see {@link discoverMtlsTokenEndpoint}. Required: the plain endpoint sees no certificate.
   */
  tokenEndpoint: string
  /** An {@link mtlsFetch} with the agent's certificate. */
  fetch: FetchLike
}

/** `client_credentials` authenticated by the TLS client certificate (RFC 8705 §2.1). */
export class TlsClientAuthSource extends OAuthTokenSource {
  readonly #clientId: string

  constructor(options: TlsClientAuthSourceOptions) {
    if (!options.tokenEndpoint) throw new TypeError('tokenEndpoint (the mTLS alias) is required')
    super(options)
    if (typeof options.clientId !== 'string' || options.clientId.length === 0) throw new TypeError('clientId is required')
    this.#clientId = options.clientId
  }

  protected async tokenRequest(): Promise<TokenRequest> {
    return { params: new URLSearchParams({ grant_type: 'client_credentials', client_id: this.#clientId }), headers: {} }
  }
}

/** The mTLS token endpoint from RFC 8414 metadata (`mtls_endpoint_aliases.token_endpoint`, RFC 8705 §5). */
export async function discoverMtlsTokenEndpoint(issuer: string, fetchImpl: FetchLike = (i, init) => fetch(i, init)): Promise<string> {
  const res = await fetchImpl(wellKnownUrl(issuer), { headers: { accept: 'application/json' }, redirect: 'error' })
  if (res.status !== 200) throw new Error(`authorization server metadata answered ${res.status}`)
  const body = (await res.json()) as { issuer?: unknown; mtls_endpoint_aliases?: { token_endpoint?: unknown } }
  if (typeof body.issuer !== 'string' || body.issuer.replace(/\/$/, '') !== issuer.replace(/\/$/, '')) throw new Error('metadata names a different issuer')
  const ep = body.mtls_endpoint_aliases?.token_endpoint
  if (typeof ep !== 'string' || !ep.startsWith('https://')) throw new Error('the server advertises no mTLS token endpoint')
  return ep
}
