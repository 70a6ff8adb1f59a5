/**
 * tls_client_auth (RFC 8705 §2.1): the client certificate of the TLS
 * handshake (or of a trusted TLS-terminating proxy) must chain to the
 * tenant's client CA bundle, be within its validity dates, be listed by no
 * configured CRL, and match what the agent pinned (subject DN, SAN URI such
 * as a SPIFFE ID, SAN DNS, thumbprint). CA bundles and CRLs are reloaded when
 * their files change.
 */
import type { X509Certificate } from 'node:crypto'
import { InvalidRequest } from '../../../errors.js'
import { parseCrls, type Crl } from '../../../lib/crl.js'
import { certificateMatches, parsePemCertificates, validateChain, type PresentedCertificate } from '../../../lib/x509.js'
import { single, type FormBody } from '../params.js'
import { JWT_BEARER_ASSERTION, MAX_ASSERTION_BYTES, assertionIssuer } from './private-key-jwt.js'
import type { ControlPlaneDeps } from '../../deps.js'
import type { Directory } from '../directory.js'
import { ClientAuthFailure } from './failure.js'
import type { AuthPurpose, AuthenticatedClient, ClientAuthenticator, ClientClaim } from './types.js'
import { WatchedFiles } from './watched-files.js'

/** What a tenant's client certificates are checked against. */
export interface ClientTrust {
  /** CAs trusted; empty when none is configured or readable (then nothing authenticates). */
  roots: X509Certificate[]
  crls: Crl[]
  /** A configured CRL file that never loaded: nothing authenticates, since revocation cannot be checked. */
  crlMissing: boolean
}

function own(map: Record<string, string>, tenant: string): string | undefined {
  return Object.hasOwn(map, tenant) ? map[tenant] : undefined
}

/**
 * Per-tenant CA bundles (`tls.tenantClientCas[tenant]`, else `tls.clientCa`)
 * and CRLs (`tls.clientCrl` plus `tls.tenantClientCrls[tenant]`), reloaded
 * when their files change (checked every `tls.fileCheckSeconds`). A config
 * map rather than a tenant column: CA bundles and CRLs are deployment files,
 * like tls.clientCa, and need no store migration. A CRL only ever revokes
 * certificates of the CA that signed it, so the global and the tenant's CRLs
 * apply together.
 */
export class ClientCaBundles {
  private readonly bundles: WatchedFiles<X509Certificate[]>
  private readonly crlFiles: WatchedFiles<Crl[]>
  private readonly warnedStale = new Set<string>()

  constructor(private readonly deps: Pick<ControlPlaneDeps, 'config' | 'logger' | 'clock'>) {
    const watch = { clock: deps.clock, logger: deps.logger, checkMs: deps.config.tls.fileCheckSeconds * 1000 }
    this.bundles = new WatchedFiles('client CA bundle', (b) => parsePemCertificates(b.toString('utf8')), watch)
    this.crlFiles = new WatchedFiles('client CRL file', parseCrls, watch)
  }

  /** The CAs trusted for `tenant`'s client certificates; empty when none is configured (then nothing authenticates). */
  forTenant(tenant: string): X509Certificate[] {
    const { tls } = this.deps.config
    const file = Object.hasOwn(tls.tenantClientCas, tenant) ? tls.tenantClientCas[tenant] : tls.clientCa
    if (!file) return []
    return this.bundles.get(file).value ?? []
  }

  /** CAs and CRLs for `tenant`. */
  trustFor(tenant: string): ClientTrust {
    const { tls } = this.deps.config
    const crls: Crl[] = []
    let crlMissing = false
    for (const file of [tls.clientCrl, own(tls.tenantClientCrls, tenant)]) {
      if (!file) continue
      const loaded = this.crlFiles.get(file)
      if (loaded.value === null) {
        crlMissing = true
        continue
      }
      for (const crl of loaded.value) {
        if (crl.nextUpdate !== null && crl.nextUpdate < this.deps.clock.now() && !this.warnedStale.has(crl.id)) {
          this.warnedStale.add(crl.id)
          this.deps.logger.warn(
            { file, next_update: new Date(crl.nextUpdate).toISOString() },
            'client CRL is past its nextUpdate; its revocations still apply, publish a fresh one',
          )
        }
        crls.push(crl)
      }
    }
    return { roots: this.forTenant(tenant), crls, crlMissing }
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
      const trust = cas.trustFor(tenant.id)
      // A configured CRL that cannot be read fails closed: revocation cannot be ruled out.
      const rejection = trust.crlMissing ? 'crl_unavailable' : validateChain(presented.cert, presented.chain, trust.roots, deps.clock.now(), trust.crls)
      if (rejection) {
        deps.logger.info({ tenant: tenant.id, agent: agent.agentId, rejection }, 'client certificate refused')
        throw new ClientAuthFailure(rejection === 'revoked' ? 'certificate_revoked' : 'bad_certificate', tenant.id)
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
