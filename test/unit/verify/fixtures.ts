/**
 * Real peers for the verifier tests: Ed25519/RSA keys generated here, a small
 * JWKS server on 127.0.0.1 (ETag, Cache-Control, RFC 8414 metadata, request
 * counting) and token signing with jose's SignJWT, plus a raw signer for
 * malformed tokens jose refuses to produce.
 */
import { createHash, createHmac, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignJWT, type JWTPayload } from 'jose'

export const ISSUER_PLACEHOLDER = 'https://issuer.test'
export const AUDIENCE = 'aegis-gateway'

export interface TestKey {
  kid: string
  alg: 'EdDSA' | 'RS256' | 'PS256'
  privateKey: KeyObject
  publicKey: KeyObject
  /** Public JWK as a JWKS publishes it. */
  jwk: Record<string, unknown>
}

export function ed25519Key(kid: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' }
  return { kid, alg: 'EdDSA', privateKey, publicKey, jwk }
}

export function rsaKey(kid: string, alg: 'RS256' | 'PS256', bits = 2048): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' }
  return { kid, alg, privateKey, publicKey, jwk }
}

/** Standard Aegis claims around `nowSec`, overridable. */
export function claimsAt(issuer: string, nowSec: number, extra: JWTPayload = {}): JWTPayload {
  return {
    iss: issuer,
    sub: 'billing-bot',
    agent_id: 'billing-bot',
    client_id: 'cl_1',
    tenant: 'acme',
    aud: AUDIENCE,
    scope: 'payments:write crm:read',
    iat: nowSec,
    nbf: nowSec,
    exp: nowSec + 600,
    jti: `jti_${Math.random().toString(36).slice(2)}`,
    policy_version: '2026-11-28.1',
    capability_hash: 'h'.repeat(43),
    ...extra,
  }
}

/** Signs with jose SignJWT (the way an honest issuer does). */
export async function signToken(key: TestKey, claims: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, typ: 'at+jwt', kid: key.kid, ...header }).sign(key.privateKey)
}

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

/** Signs any header/payload with node:crypto: for attack tokens jose will not make. */
export function rawSign(header: Record<string, unknown>, payload: unknown, key: KeyObject | null): string {
  const input = `${b64(header)}.${b64(payload)}`
  if (key === null) return `${input}.`
  const sig = key.asymmetricKeyType === 'ed25519' ? cryptoSign(null, Buffer.from(input), key) : cryptoSign('sha256', Buffer.from(input), key)
  return `${input}.${sig.toString('base64url')}`
}

/** HS256 over the token with `secret` (the classic public-key-as-HMAC-secret attack). */
export function hmacSign(header: Record<string, unknown>, payload: unknown, secret: Buffer | string): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

export type JwksMode = 'ok' | 'error' | 'garbage' | 'not-a-set' | 'slow'

/** A real JWKS server on 127.0.0.1:0. */
export interface JwksServer {
  url: string
  jwksUrl: string
  /** Every request seen, in order. */
  requests: Array<{ path: string; ifNoneMatch: string | undefined }>
  /** Requests for the JWKS document only. */
  jwksRequests(): number
  keys: Array<Record<string, unknown>>
  mode: JwksMode
  maxAge: number | undefined
  /** Issuer written into the metadata document (default: the server's own URL). */
  metadataIssuer: string | undefined
  close(): Promise<void>
}

export async function startJwksServer(keys: TestKey[] = []): Promise<JwksServer> {
  const state: JwksServer = {
    url: '',
    jwksUrl: '',
    requests: [],
    jwksRequests: () => state.requests.filter((r) => r.path === '/.well-known/jwks.json').length,
    keys: keys.map((k) => k.jwk),
    mode: 'ok',
    maxAge: 300,
    metadataIssuer: undefined,
    close: async () => {},
  }
  const server: Server = createServer((req: IncomingMessage, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    const inm = req.headers['if-none-match']
    state.requests.push({ path, ifNoneMatch: typeof inm === 'string' ? inm : undefined })
    if (path === '/.well-known/oauth-authorization-server') {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ issuer: state.metadataIssuer ?? state.url, jwks_uri: state.jwksUrl, token_endpoint: `${state.url}/oauth2/token` }))
      return
    }
    if (path !== '/.well-known/jwks.json') {
      res.statusCode = 404
      res.end()
      return
    }
    if (state.mode === 'error') {
      res.statusCode = 503
      res.end('down')
      return
    }
    if (state.mode === 'garbage') {
      res.setHeader('content-type', 'application/json')
      res.end('<html>not json')
      return
    }
    if (state.mode === 'slow') return // never answers; the client's timeout must fire
    const body = state.mode === 'not-a-set' ? JSON.stringify({ keys: 'nope' }) : JSON.stringify({ keys: state.keys })
    const etag = `"${createHash('sha256').update(body).digest('base64url')}"`
    res.setHeader('etag', etag)
    if (state.maxAge !== undefined) res.setHeader('cache-control', `public, max-age=${state.maxAge}`)
    if (inm === etag) {
      res.statusCode = 304
      res.end()
      return
    }
    res.setHeader('content-type', 'application/jwk-set+json')
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  state.url = `http://127.0.0.1:${port}`
  state.jwksUrl = `${state.url}/.well-known/jwks.json`
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return state
}

/** A server that only counts requests: stands for an attacker's key URL. */
export async function startDecoyServer(): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0
  const server = createServer((_req, res) => {
    hits++
    res.end('{}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** Waits until `predicate` holds, polling; fails after `ms`. Bounds a wait, never asserts a duration. */
export async function waitFor(predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}
