/**
 * Step 3 (docs/reference.md "Gateway"): sender constraint. A token with
 * `cnf["x5t#S256"]` (RFC 8705 §3) works only with that client certificate,
 * from this TLS connection or from a trusted proxy's header; a token with
 * `cnf.jkt` (RFC 9449 §7) only as `Authorization: DPoP` with a fresh proof of
 * that key for this method and URL, carrying the token's hash, whose `jti`
 * is used once. A DPoP-bound token used as Bearer, without a proof or with
 * another key, and a Bearer-bound token presented with another certificate
 * or none, get 401 `invalid_token`.
 */
import type { IncomingMessage } from 'node:http'
import { AegisError } from '../../errors.js'
import { DpopNonces, DpopProofError, dpopChallenge, verifyDpopProof } from '../../lib/dpop.js'
import { certThumbprint, presentedCertificate, type CertificateSource } from '../../lib/x509.js'
import type { GatewayDeps } from '../deps.js'
import type { TokenView } from './token-view.js'

/** What the pipeline needs of the HTTP request to check a binding (a FastifyRequest fits). */
export interface SenderSource {
  readonly raw: IncomingMessage
  readonly method: string
  readonly url: string
  readonly protocol: string
  readonly host: string
  readonly headers: Record<string, string | string[] | undefined>
}

/** The Authorization scheme the token came with. */
export function authScheme(source: SenderSource | undefined): 'bearer' | 'dpop' | null {
  const h = source?.headers.authorization
  if (typeof h !== 'string') return null
  const sp = h.indexOf(' ')
  const scheme = (sp < 0 ? h : h.slice(0, sp)).toLowerCase()
  return scheme === 'dpop' ? 'dpop' : scheme === 'bearer' ? 'bearer' : null
}

const nonceBook = new WeakMap<GatewayDeps, DpopNonces>()

function nonces(deps: GatewayDeps): DpopNonces {
  let n = nonceBook.get(deps)
  if (!n) {
    n = new DpopNonces(deps.config.dpop.nonceSecret)
    nonceBook.set(deps, n)
  }
  return n
}

// Refusals that are replays: the pipeline records them as `token.replayed`, so they reach the replay KPI.
const REPLAY_REFUSALS = new WeakSet<object>()

/** True for the error a replayed DPoP proof was refused with. */
export function isReplayRefusal(err: unknown): boolean {
  return typeof err === 'object' && err !== null && REPLAY_REFUSALS.has(err)
}

function bindingRefused(message: string, dpop: boolean, extra?: Record<string, string>): AegisError {
  const headers: Record<string, string> = { ...extra }
  // RFC 9449 §7.1: a DPoP-bound token's errors are DPoP challenges.
  if (dpop) headers['www-authenticate'] = dpopChallenge('invalid_token', message)
  return new AegisError('invalid_token', message, { headers })
}

/**
 * Checks the token's `cnf` against the request. Synchronous for unbound
 * tokens presented as Bearer and for certificate-bound ones; a DPoP proof
 * (signature, replay claim) makes it asynchronous. A request without a
 * source (an entry point that does not pass one) fails closed for bound tokens.
 */
export function enforceSenderConstraint(deps: GatewayDeps, view: TokenView, source: SenderSource | undefined): void | Promise<void> {
  const cnf = view.verified.claims.cnf
  const scheme = authScheme(source)
  if (cnf === undefined) {
    if (scheme === 'dpop') throw bindingRefused('the token is not DPoP-bound; use the Bearer scheme', true)
    return
  }
  const jkt = typeof cnf.jkt === 'string' ? cnf.jkt : undefined
  const x5t = typeof cnf['x5t#S256'] === 'string' ? cnf['x5t#S256'] : undefined
  if (jkt === undefined && x5t === undefined) throw bindingRefused('unsupported confirmation method', false)
  if (!source) throw bindingRefused('sender-constrained tokens are not accepted at this entry point', jkt !== undefined)
  if (x5t !== undefined) {
    let presented: ReturnType<typeof presentedCertificate>
    try {
      presented = presentedCertificate(source.raw as unknown as CertificateSource, deps.config.tls)
    } catch {
      presented = null
    }
    if (!presented || certThumbprint(presented.cert) !== x5t) throw bindingRefused('the token is bound to another client certificate', jkt !== undefined)
  }
  if (jkt === undefined) return
  if (scheme !== 'dpop') throw bindingRefused('a DPoP-bound token needs the DPoP scheme and a proof', true)
  return checkDpop(deps, view, source, jkt)
}

async function checkDpop(deps: GatewayDeps, view: TokenView, source: SenderSource, jkt: string): Promise<void> {
  const proof = source.headers.dpop
  if (typeof proof !== 'string') throw bindingRefused(Array.isArray(proof) ? 'exactly one DPoP proof is allowed' : 'a DPoP proof is required', true)
  const h = source.headers.authorization as string
  const token = h.slice(h.indexOf(' ') + 1).trim()
  const now = Math.floor(deps.clock.now() / 1000)
  const n = nonces(deps)
  const path = source.url.split('?')[0]!
  let verified: Awaited<ReturnType<typeof verifyDpopProof>>
  try {
    verified = await verifyDpopProof(proof, {
      method: source.method,
      url: `${source.protocol}://${source.host}${path}`,
      now,
      maxAgeSeconds: deps.config.dpop.proofMaxAgeSeconds,
      skewSeconds: deps.config.tokens.clockSkewSeconds,
      accessToken: token,
      nonce: { valid: (x) => n.valid(x, now), required: deps.config.dpop.requireNonce },
    })
  } catch (err) {
    if (err instanceof DpopProofError) {
      if (err.nonce) {
        // RFC 9449 §9: 401 with a fresh nonce; the client retries with it.
        throw new AegisError('invalid_token', err.message, {
          headers: { 'www-authenticate': dpopChallenge('use_dpop_nonce', err.message), 'dpop-nonce': n.issue(now) },
        })
      }
      throw bindingRefused(err.message, true)
    }
    throw err
  }
  if (verified.jkt !== jkt) throw bindingRefused('the DPoP proof is signed with another key than the token is bound to', true)
  let first: boolean
  try {
    first = await deps.replay.claim(`dpop:${jkt}:${verified.jti}`, verified.replayUntil)
  } catch (err) {
    throw new AegisError('temporarily_unavailable', 'DPoP replay check unavailable', { cause: err })
  }
  if (!first) {
    deps.metrics.replayAttempts.inc()
    const err = bindingRefused('DPoP proof already used', true)
    REPLAY_REFUSALS.add(err)
    throw err
  }
  void view
}
