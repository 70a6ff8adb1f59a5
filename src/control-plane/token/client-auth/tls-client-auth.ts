/**
 * tls_client_auth (RFC 8705 §2.1): the client certificate of the TLS
 * handshake (or of a trusted TLS-terminating proxy) must chain to the
 * tenant's client CA bundle, be within its validity dates, and match what the
 * agent pinned (subject DN, SAN URI such as a SPIFFE ID, SAN DNS, thumbprint).
 */
import { readFileSync } from 'node:fs'
import type { X509Certificate } from 'node:crypto'
import { InvalidRequest } from '../../../errors.js'
import { certificateMatches, parsePemCertificates, validateChain, type PresentedCertificate } from '../../../lib/x509.js'
import { single, type FormBody } from '../params.js'
import { JWT_BEARER_ASSERTION, MAX_ASSERTION_BYTES, assertionIssuer } from './private-key-jwt.js'
import type { ControlPlaneDeps } from '../../deps.js'
import type { Directory } from '../directory.js'
import { ClientAuthFailure } from './failure.js'
import type { AuthPurpose, AuthenticatedClient, ClientAuthenticator, ClientClaim } from './types.js'

/**
 * Per-tenant CA bundles: `tls.tenantClientCas[tenant]`, else `tls.clientCa`.
 * Read once per file (a changed bundle needs a restart, like the server certificate).
 * A config map rather than a tenant column: CA bundles are deployment files, like tls.clientCa, and need no store migration.
 */
export class ClientCaBundles {
  private readonly byFile = new Map<string, X509Certificate[]>()

  constructor(private readonly deps: Pick<ControlPlaneDeps, 'config' | 'logger'>) {}

  /** The CAs trusted for `tenant`'s client certificates; empty when none is configured (then nothing authenticates). */
  forTenant(tenant: string): X509Certificate[] {
    const { tls } = this.deps.config
    const file = Object.prototype.hasOwnProperty.call(tls.tenantClientCas, tenant) ? tls.tenantClientCas[tenant] : tls.clientCa
    if (!file) return []
    let certs = this.byFile.get(file)
    if (!certs) {
      try {
        certs = parsePemCertificates(readFileSync(file, 'utf8'))
      } catch (err) {
        this.deps.logger.error({ err, file }, 'client CA bundle unreadable; tls_client_auth refused for its tenants')
        certs = []
      }
      this.byFile.set(file, certs)
    }
    return certs
  }
}

/** The tls_client_auth authenticator. */
export function tlsClientAuthenticator(deps: ControlPlaneDeps, dir: Directory): ClientAuthenticator {
  const cas = new ClientCaBundles(deps)
  return {
    methods: ['tls_client_auth'],
    async authenticate(claim: ClientClaim, _purpose: AuthPurpose): Promise<AuthenticatedClient> {
      const presented = claim.certificate
      if (!presented) throw new ClientAuthFailure('missing')
      const agent = await deps.store.agents.getByClientId(claim.clientId)
      if (!agent) throw new ClientAuthFailure('unknown_client')
      if (agent.tokenEndpointAuthMethod !== 'tls_client_auth') throw new ClientAuthFailure('method_not_allowed', agent.tenant)
      const tenant = await dir.tenant(agent.tenant)
      if (!tenant) throw new ClientAuthFailure('tenant_missing', agent.tenant)
      const rejection = validateChain(presented.cert, presented.chain, cas.forTenant(tenant.id), deps.clock.now())
      if (rejection) {
        deps.logger.info({ tenant: tenant.id, agent: agent.agentId, rejection }, 'client certificate refused')
        throw new ClientAuthFailure('bad_certificate', tenant.id)
      }
      const pinned = certificateMatches(presented.cert, {
        subjectDn: agent.tlsClientAuthSubjectDn,
        sanUri: agent.tlsClientAuthSanUri,
        sanDns: agent.tlsClientAuthSanDns,
        thumbprint: agent.tlsClientAuthThumbprint,
      })
      if (!pinned) throw new ClientAuthFailure('bad_certificate', tenant.id)
      return { method: 'tls_client_auth', clientId: agent.clientId, tenant, agent, credential: null, commit: noCommit }
    },
  }
}

async function noCommit(): Promise<void> {}

/**
 * Completes what `readClientClaim` found with what it cannot see: a
 * `client_assertion` makes the claim private_key_jwt (client_id optional,
 * then taken from the assertion's `iss`), and a bare `client_id` sent with a
 * client certificate makes it tls_client_auth. Throws `invalid_request` when
 * an assertion comes with a client secret (RFC 6749 §2.3: one method).
 */
export function refineClientClaim(claim: ClientClaim | null, body: FormBody, certificate: PresentedCertificate | null): ClientClaim | null {
  const type = single(body, 'client_assertion_type', 256)
  const assertion = single(body, 'client_assertion', MAX_ASSERTION_BYTES)
  if (type !== undefined || assertion !== undefined) {
    if (claim && claim.method !== 'none') throw new InvalidRequest('use one client authentication method, not several')
    if (type !== JWT_BEARER_ASSERTION || assertion === undefined) throw new ClientAuthFailure('malformed')
    const iss = assertionIssuer(assertion)
    const clientId = claim?.clientId ?? iss
    if (clientId === undefined) throw new ClientAuthFailure('malformed')
    if (claim && iss !== undefined && iss !== claim.clientId) throw new ClientAuthFailure('bad_assertion')
    return { method: 'private_key_jwt', clientId, assertion }
  }
  if (claim?.method === 'none' && certificate) return { method: 'tls_client_auth', clientId: claim.clientId, certificate }
  return claim
}
