/**
 * Sender-constrained tokens at the token endpoint: a `DPoP` proof (RFC 9449
 * §5) binds the token to the proof key (`cnf.jkt`, `token_type: "DPoP"`), and
 * a client certificate (RFC 8705 §3) binds it to the certificate
 * (`cnf["x5t#S256"]`). Both may apply at once; a gateway then checks both.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { AegisError, InvalidRequest, Unavailable } from '../../errors.js'
import { DpopNonces, DpopProofError, verifyDpopProof, type VerifiedDpopProof } from '../../lib/dpop.js'
import { certThumbprint, presentedCertificate, type CertificateSource, type PresentedCertificate } from '../../lib/x509.js'
import type { ControlPlaneDeps } from '../deps.js'
import { tokenEndpointUrls } from './client-auth/private-key-jwt.js'

/** What the issued token is bound to. */
export interface SenderBinding {
  cnf: Record<string, string> | null
  tokenType: 'Bearer' | 'DPoP'
  proof: VerifiedDpopProof | null
}

const nonceBook = new WeakMap<ControlPlaneDeps, DpopNonces>()

/** The stateless DPoP nonce source of a control plane (shared secret `dpop.nonceSecret`). */
export function dpopNonces(deps: ControlPlaneDeps): DpopNonces {
  let n = nonceBook.get(deps)
  if (!n) {
    n = new DpopNonces(deps.config.dpop.nonceSecret)
    if (!deps.config.dpop.nonceSecret && deps.config.dpop.requireNonce)
      deps.logger.warn('dpop.requireNonce without dpop.nonceSecret: nonces hold only for this process')
    nonceBook.set(deps, n)
  }
  return n
}

function dpopError(deps: ControlPlaneDeps, err: DpopProofError): AegisError {
  const nonce = dpopNonces(deps).issue(Math.floor(deps.clock.now() / 1000))
  if (err.nonce) return new AegisError('use_dpop_nonce', err.message, { headers: { 'dpop-nonce': nonce } })
  return new AegisError('invalid_dpop_proof', err.message)
}

/**
 * Verifies the request's DPoP proof (if any) and reads the certificate
 * binding; changes nothing (the proof's jti is claimed by `commitBinding`).
 * Rejects with `invalid_dpop_proof` or `use_dpop_nonce` (400).
 */
export async function readSenderBinding(deps: ControlPlaneDeps, request: FastifyRequest, certificate: PresentedCertificate | null): Promise<SenderBinding> {
  const cnf: Record<string, string> = {}
  if (certificate) cnf['x5t#S256'] = certThumbprint(certificate.cert)
  const header = request.headers.dpop
  let proof: VerifiedDpopProof | null = null
  if (header !== undefined) {
    if (Array.isArray(header)) throw new AegisError('invalid_dpop_proof', 'exactly one DPoP header is allowed')
    const urls = tokenEndpointUrls(deps.config)
    const url = (request.raw.socket as { encrypted?: boolean }).encrypted && urls.length > 1 ? urls[1]! : urls[0]!
    const nonces = dpopNonces(deps)
    const now = Math.floor(deps.clock.now() / 1000)
    try {
      proof = await verifyDpopProof(header, {
        method: request.method,
        url,
        now,
        maxAgeSeconds: deps.config.dpop.proofMaxAgeSeconds,
        skewSeconds: deps.config.tokens.clockSkewSeconds,
        nonce: { valid: (n) => nonces.valid(n, now), required: deps.config.dpop.requireNonce },
      })
    } catch (err) {
      if (err instanceof DpopProofError) throw dpopError(deps, err)
      throw err
    }
    cnf.jkt = proof.jkt
  }
  return { cnf: Object.keys(cnf).length > 0 ? cnf : null, tokenType: proof ? 'DPoP' : 'Bearer', proof }
}

/** Claims the proof's jti (single use, §11.1); `invalid_dpop_proof` when already used, 503 when the cache is unreachable. */
export async function commitBinding(deps: ControlPlaneDeps, binding: SenderBinding, reply: FastifyReply): Promise<void> {
  const proof = binding.proof
  if (!proof) return
  let first: boolean
  try {
    first = await deps.replay.claim(`dpop-cp:${proof.jkt}:${proof.jti}`, proof.replayUntil)
  } catch (err) {
    throw new Unavailable('DPoP replay check unavailable; retry later', { cause: err })
  }
  if (!first) throw new AegisError('invalid_dpop_proof', 'DPoP proof already used')
  if (deps.config.dpop.requireNonce) reply.header('dpop-nonce', dpopNonces(deps).issue(Math.floor(deps.clock.now() / 1000)))
}

/**
 * The client certificate of a token-endpoint request (RFC 8705): TLS handshake, or a trusted proxy's header.
 * Null when none; `invalid_request` when a trusted proxy sent an unreadable header.
 */
export function clientCertificateOf(deps: ControlPlaneDeps, request: FastifyRequest): PresentedCertificate | null {
  try {
    return presentedCertificate(request.raw as unknown as CertificateSource, deps.config.tls)
  } catch {
    throw new InvalidRequest('the forwarded client certificate is unreadable')
  }
}
