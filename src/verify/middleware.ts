import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { VerifyError } from './errors.js'
import type { AccessTokenClaims, VerifiedToken, Verifier } from './verifier.js'
import type { KeySource } from './jwk-set.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Verified Aegis access-token claims, set by `fastifyAegis`. */
    aegis?: AccessTokenClaims
  }
}

/** Options shared by every tool-server adapter. */
export interface VerifyRequestOptions {
  /** Scopes the token must all carry (space-separated `scope` claim); else 403 `insufficient_scope`. */
  requiredScopes?: string[]
  /**
   * Deny-list check (for example the gateway's revocation feed). Returning
   * true refuses the token with 401 `invalid_token`; throwing answers 503,
   * since a revocation state that cannot be read must not let a token pass.
   */
  isDenied?: (claims: AccessTokenClaims, token: VerifiedToken) => boolean
  /**
   * Proof of possession for sender-constrained tokens (RFC 8705 `cnf.x5t#S256`,
   * RFC 9449 `cnf.jkt`): return true when the request proves the key the
   * token is bound to (e.g. compare `cnf['x5t#S256']` with the SHA-256 of the
   * TLS client certificate). Without it, tokens carrying `cnf` are refused: a
   * bound token must never be accepted as a plain bearer token.
   */
  checkSenderConstraint?: (cnf: NonNullable<AccessTokenClaims['cnf']>, token: VerifiedToken) => boolean
}

/** An error answer prepared by {@link verifyRequest}. */
export interface VerifyRequestRefusal {
  readonly ok: false
  readonly status: 401 | 403 | 503
  readonly error: 'invalid_token' | 'insufficient_scope' | 'temporarily_unavailable'
  /** Safe text for `error_description`. */
  readonly description: string
  /** Response headers to set (`WWW-Authenticate` for 401/403). */
  readonly headers: Readonly<Record<string, string>>
  /** JSON body `{"error", "error_description"}`. */
  readonly body: { readonly error: string; readonly error_description: string }
}

/** Outcome of {@link verifyRequest}. */
export type VerifyRequestResult = { readonly ok: true; readonly token: VerifiedToken } | VerifyRequestRefusal

function quoted(text: string): string {
  return text.replace(/["\\\r\n]/g, '')
}

function refuse(status: VerifyRequestRefusal['status'], error: VerifyRequestRefusal['error'], description: string, scope?: string): VerifyRequestRefusal {
  const headers: Record<string, string> = {}
  if (status !== 503) {
    // RFC 6750 §3
    let challenge = `Bearer error="${error}", error_description="${quoted(description)}"`
    if (scope !== undefined) challenge += `, scope="${quoted(scope)}"`
    headers['www-authenticate'] = challenge
  }
  return { ok: false, status, error, description, headers, body: { error, error_description: description } }
}

/** The bearer token of an `Authorization` header (RFC 6750 §2.1), or undefined. */
export function bearerToken(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): string | undefined {
  const raw = headers.authorization ?? headers.Authorization
  const value = Array.isArray(raw) ? (raw.length === 1 ? raw[0] : undefined) : raw
  if (typeof value !== 'string') return undefined
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(value)
  return m?.[1]
}

/**
 * Verifies the bearer token of a request: token present, {@link Verifier.verify},
 * deny list, required scopes. Never throws for a bad token; returns the
 * answer to send instead (401 `invalid_token`, 403 `insufficient_scope`, or
 * 503 when `isDenied` fails).
 */
export async function verifyRequest(
  verifier: Verifier<KeySource>,
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
  options: VerifyRequestOptions = {},
): Promise<VerifyRequestResult> {
  const token = bearerToken(headers)
  if (token === undefined) return refuse(401, 'invalid_token', 'missing bearer token')
  let verified: VerifiedToken
  try {
    verified = await verifier.verify(token)
  } catch (err) {
    if (err instanceof VerifyError) return refuse(401, 'invalid_token', err.message)
    throw err
  }
  const cnf = verified.claims.cnf
  if (cnf !== undefined && cnf !== null) {
    let proven = false
    try {
      proven = options.checkSenderConstraint?.(cnf, verified) === true
    } catch {
      proven = false
    }
    if (!proven) return refuse(401, 'invalid_token', 'sender-constrained token presented without proof of possession')
  }
  if (options.isDenied !== undefined) {
    let denied: boolean
    try {
      denied = options.isDenied(verified.claims, verified)
    } catch {
      return refuse(503, 'temporarily_unavailable', 'revocation state unavailable')
    }
    if (denied) return refuse(401, 'invalid_token', 'token revoked')
  }
  if (options.requiredScopes !== undefined && options.requiredScopes.length > 0) {
    const granted = new Set(typeof verified.claims.scope === 'string' ? verified.claims.scope.split(' ') : [])
    if (!options.requiredScopes.every((s) => granted.has(s))) {
      return refuse(403, 'insufficient_scope', 'token lacks a required scope', options.requiredScopes.join(' '))
    }
  }
  return { ok: true, token: verified }
}

function sendRefusal(res: ServerResponse, refusal: VerifyRequestRefusal): void {
  const body = JSON.stringify(refusal.body)
  res.statusCode = refusal.status
  for (const [k, v] of Object.entries(refusal.headers)) res.setHeader(k, v)
  res.setHeader('content-type', 'application/json; charset=utf-8')
  res.setHeader('cache-control', 'no-store')
  res.setHeader('content-length', Buffer.byteLength(body))
  res.end(body)
}

/**
 * A fastify `onRequest` hook that verifies the bearer token and sets
 * `request.aegis` to the claims, or answers 401/403 itself.
 * Typed with `import type` only: fastify is not loaded by this module.
 *
 * @example app.addHook('onRequest', fastifyAegis(verifier, { requiredScopes: ['crm:read'] }))
 */
export function fastifyAegis(
  verifier: Verifier<KeySource>,
  options: VerifyRequestOptions = {},
): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined> {
  return async function aegisOnRequest(request, reply) {
    const result = await verifyRequest(verifier, request.headers, options)
    if (result.ok) {
      request.aegis = result.token.claims
      return undefined
    }
    // fastify: an async hook that answers early sends and returns the reply.
    return reply
      .code(result.status)
      .headers({ ...result.headers, 'cache-control': 'no-store' })
      .send(result.body)
  }
}

/** Minimal request shape express (and connect) hand to middleware. */
export interface ExpressLikeRequest {
  headers: IncomingHttpHeaders
  /** Set to the verified claims before `next()` is called. */
  aegis?: AccessTokenClaims
}

/**
 * Express/connect middleware: verifies the bearer token, sets `req.aegis`
 * and calls `next()`, or answers 401/403 itself. Unexpected errors go to
 * `next(err)`.
 *
 * @example app.use(expressAegis(verifier))
 */
export function expressAegis(
  verifier: Verifier<KeySource>,
  options: VerifyRequestOptions = {},
): (req: ExpressLikeRequest, res: ServerResponse, next: (err?: unknown) => void) => void {
  return function aegisMiddleware(req, res, next) {
    verifyRequest(verifier, req.headers, options).then(
      (result) => {
        if (result.ok) {
          req.aegis = result.token.claims
          next()
        } else {
          sendRefusal(res, result)
        }
      },
      (err: unknown) => next(err),
    )
  }
}

/**
 * Plain `node:http` guard: resolves to the verified claims, or answers
 * 401/403 itself and resolves to null (the handler then returns).
 *
 * @example
 * const guard = nodeHttpAegis(verifier)
 * http.createServer(async (req, res) => { const claims = await guard(req, res); if (!claims) return; … })
 */
export function nodeHttpAegis(
  verifier: Verifier<KeySource>,
  options: VerifyRequestOptions = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<AccessTokenClaims | null> {
  return async function aegisGuard(req, res) {
    const result = await verifyRequest(verifier, req.headers, options)
    if (result.ok) return result.token.claims
    sendRefusal(res, result)
    return null
  }
}
