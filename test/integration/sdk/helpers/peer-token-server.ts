/**
 * A small real OAuth token server (node:http, tokens signed with jose) for
 * the failure modes the real control plane cannot be made to show on demand:
 * 5xx, dropped connections, scripted 429s. A peer of the SDK, not a mock of it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import { SignJWT, generateKeyPair } from 'jose'

export interface PeerRequest {
  /** The authenticated client (or `subject_token` for exchange). */
  clientId: string
  /** How the client authenticated: basic, post or none. */
  auth: 'basic' | 'post' | 'none'
  params: Record<string, string>
  /** The test's clock when the request arrived. */
  at: number
}

/** A scripted answer for the next token request. */
export type Scripted = { status: number; body?: Record<string, unknown>; headers?: Record<string, string> } | { drop: true }

export interface PeerTokenServer {
  readonly issuer: string
  readonly tokenEndpoint: string
  readonly port: number
  readonly requests: PeerRequest[]
  readonly metadataRequests: number
  /** Clients it accepts. */
  clients: Map<string, string>
  /** Answers for the next requests, consumed in order; empty = normal issuance. */
  script: Scripted[]
  /** Lifetime of issued tokens, seconds. */
  expiresIn: number
  /** Overrides the issuer in metadata (to test the RFC 8414 §3.3 check). */
  metadataIssuer: string | undefined
  stop(): Promise<void>
  restart(): Promise<void>
}

export async function startPeerTokenServer(options: { now: () => number; expiresIn?: number }): Promise<PeerTokenServer> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' })
  let server: Server
  let port = 0
  let metadataRequests = 0
  const issuer = (): string => `http://127.0.0.1:${port}`
  const state: PeerTokenServer = {
    get issuer() {
      return issuer()
    },
    get tokenEndpoint() {
      return `${issuer()}/oauth2/token`
    },
    get port() {
      return port
    },
    get metadataRequests() {
      return metadataRequests
    },
    requests: [],
    clients: new Map<string, string>(),
    script: [],
    expiresIn: options.expiresIn ?? 600,
    metadataIssuer: undefined,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
    restart: () => listen(),
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
      res.end(JSON.stringify(body))
    }
    if (req.method === 'GET' && req.url === '/.well-known/oauth-authorization-server') {
      metadataRequests++
      json(200, {
        issuer: state.metadataIssuer ?? issuer(),
        token_endpoint: `${issuer()}/oauth2/token`,
        grant_types_supported: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      })
      return
    }
    if (req.method !== 'POST' || req.url !== '/oauth2/token') {
      json(404, { error: 'not_found' })
      return
    }
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const params = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')))
    let clientId = ''
    let secret: string | undefined
    let auth: PeerRequest['auth'] = 'none'
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')
    if (basic) {
      const [id, sec] = Buffer.from(basic[1]!, 'base64')
        .toString('utf8')
        .split(':')
        .map((p) => decodeURIComponent(p.replace(/\+/g, ' ')))
      clientId = id ?? ''
      secret = sec
      auth = 'basic'
    } else if (params.client_secret !== undefined) {
      clientId = params.client_id ?? ''
      secret = params.client_secret
      auth = 'post'
    } else if (params.grant_type === 'urn:ietf:params:oauth:grant-type:token-exchange') {
      clientId = params.subject_token ?? ''
    }
    state.requests.push({ clientId, auth, params, at: options.now() })
    const next = state.script.shift()
    if (next && 'drop' in next) {
      req.socket.destroy()
      return
    }
    if (next) {
      json(next.status, next.body ?? {}, next.headers)
      return
    }
    if (auth !== 'none' && state.clients.get(clientId) !== secret) {
      json(401, { error: 'invalid_client', error_description: 'client authentication failed' }, { 'www-authenticate': 'Basic realm="aegis"' })
      return
    }
    const now = Math.floor(options.now() / 1000)
    const token = await new SignJWT({ client_id: clientId, scope: params.scope ?? 'default' })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: 'peer' })
      .setIssuer(issuer())
      .setSubject(clientId)
      .setAudience(params.audience ?? 'aegis-gateway')
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + state.expiresIn)
      .setJti(randomUUID())
      .sign(privateKey)
    json(200, {
      access_token: token,
      token_type: 'Bearer',
      expires_in: state.expiresIn,
      scope: params.scope ?? 'default',
      ...(params.subject_token ? { issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' } : {}),
    })
  }

  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      server = createServer((req, res) => {
        handle(req, res).catch(() => {
          res.destroy()
        })
      })
      server.keepAliveTimeout = 1000
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        port = (server.address() as AddressInfo).port
        resolve()
      })
    })
  await listen()

  return state
}
