/**
 * Client authentication at the token, revocation and introspection
 * endpoints: `readClientClaim` finds what the request presented (exactly one
 * method, RFC 6749 §2.3), `ClientAuthenticators` verifies it with the
 * authenticator registered for that method. private_key_jwt (RFC 7523) and
 * tls_client_auth (RFC 8705) plug in here as further authenticators.
 */
import { InvalidRequest } from '../../../errors.js'
import type { TokenEndpointAuthMethod } from '../../../store/types.js'
import type { ControlPlaneDeps } from '../../deps.js'
import type { Directory } from '../directory.js'
import type { FormBody } from '../params.js'
import { single } from '../params.js'
import { clientSecretAuthenticator } from './client-secret.js'
import { ClientAuthFailure } from './failure.js'
import { privateKeyJwtAuthenticator } from './private-key-jwt.js'
import { tlsClientAuthenticator } from './tls-client-auth.js'
import type { AuthPurpose, AuthenticatedClient, ClientAuthenticator, ClientClaim } from './types.js'

export { ClientAuthFailure } from './failure.js'
export { refineClientClaim } from './tls-client-auth.js'
export type { AuthPurpose, AuthenticatedClient, ClientAuthenticator, ClientClaim, AuthFailureReason } from './types.js'

const MAX_CLIENT_ID = 128
const MAX_SECRET = 256

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before going into Basic. */
function formDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '))
}

/**
 * What the request presented. Resolves null when it presented nothing.
 * Throws `invalid_request` when two methods were used at once and
 * `ClientAuthFailure('malformed')` for an unreadable Basic header.
 */
export function readClientClaim(authorization: string | undefined, body: FormBody): ClientClaim | null {
  const bodyId = single(body, 'client_id', 1024)
  const bodySecret = single(body, 'client_secret', 1024)
  if (authorization !== undefined && authorization.length > 6 && authorization.slice(0, 6).toLowerCase() === 'basic ') {
    if (bodySecret !== undefined) throw new InvalidRequest('use one client authentication method, not several')
    const b64 = authorization.slice(6).trim()
    if (b64.length > 2048 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new ClientAuthFailure('malformed')
    const decoded = Buffer.from(b64, 'base64').toString('utf8')
    const i = decoded.indexOf(':')
    if (i < 0) throw new ClientAuthFailure('malformed')
    let id: string
    let secret: string
    try {
      id = formDecode(decoded.slice(0, i))
      secret = formDecode(decoded.slice(i + 1))
    } catch {
      throw new ClientAuthFailure('malformed')
    }
    if (id.length === 0 || id.length > MAX_CLIENT_ID || secret.length > MAX_SECRET) throw new ClientAuthFailure('malformed')
    if (bodyId !== undefined && bodyId !== id) throw new InvalidRequest('client_id in the body differs from the authenticated client')
    return { method: 'client_secret_basic', clientId: id, secret }
  }
  if (bodySecret !== undefined) {
    if (bodyId === undefined || bodyId.length > MAX_CLIENT_ID || bodySecret.length > MAX_SECRET) throw new ClientAuthFailure('malformed')
    return { method: 'client_secret_post', clientId: bodyId, secret: bodySecret }
  }
  if (bodyId !== undefined) {
    // A public client (no credentials): agents are always confidential.
    return { method: 'none', clientId: bodyId.slice(0, MAX_CLIENT_ID) }
  }
  return null
}

/** The registered authenticators, by method. */
export class ClientAuthenticators {
  private readonly byMethod = new Map<TokenEndpointAuthMethod, ClientAuthenticator>()

  constructor(list: ClientAuthenticator[]) {
    for (const a of list) for (const m of a.methods) this.byMethod.set(m, a)
  }

  /** Verifies the claim; rejects with ClientAuthFailure. */
  authenticate(claim: ClientClaim, purpose: AuthPurpose): Promise<AuthenticatedClient> {
    const a = this.byMethod.get(claim.method)
    if (!a) return Promise.reject(new ClientAuthFailure('method_not_allowed'))
    return a.authenticate(claim, purpose)
  }

  /** Methods for the metadata document. */
  methods(): TokenEndpointAuthMethod[] {
    return [...this.byMethod.keys()]
  }
}

/** The authenticators this control plane offers. */
export function createClientAuthenticators(deps: ControlPlaneDeps, dir: Directory): ClientAuthenticators {
  return new ClientAuthenticators([clientSecretAuthenticator(deps, dir), privateKeyJwtAuthenticator(deps, dir), tlsClientAuthenticator(deps, dir)])
}
