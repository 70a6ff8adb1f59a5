/** RFC 8414 authorization server metadata (`GET /.well-known/oauth-authorization-server`). */
import type { FastifyInstance } from 'fastify'
import { DPOP_ALGORITHMS } from '../../lib/dpop.js'
import type { ControlPlaneDeps } from '../deps.js'
import { tokenService } from './routes.js'

/** The metadata document for this configuration. */
export function authorizationServerMetadata(deps: ControlPlaneDeps): Record<string, unknown> {
  const { config } = deps
  const svc = tokenService(deps)
  const base = config.issuer.replace(/\/+$/, '')
  const mtlsAliases = config.control.tlsPort !== undefined && Boolean(config.tls.cert)
  // RFC 8705 §5: certificates reach the server only over TLS, so tls_client_auth is advertised only with an
  // mTLS listener or an https token endpoint (TLS terminated in front).
  const tlsReachable = mtlsAliases || base.startsWith('https://')
  const methods = svc.authenticators.methods().filter((m) => m !== 'tls_client_auth' || tlsReachable)
  const doc: Record<string, unknown> = {
    issuer: config.issuer,
    token_endpoint: `${base}/oauth2/token`,
    jwks_uri: `${base}/.well-known/jwks.json`,
    revocation_endpoint: `${base}/oauth2/revoke`,
    introspection_endpoint: `${base}/oauth2/introspect`,
    grant_types_supported: [...svc.grants.keys()],
    // No authorization endpoint: agents use grants that need none.
    response_types_supported: [],
    token_endpoint_auth_methods_supported: methods,
    token_endpoint_auth_signing_alg_values_supported: ['EdDSA', 'ES256', 'RS256', 'PS256'],
    revocation_endpoint_auth_methods_supported: methods,
    introspection_endpoint_auth_methods_supported: [...methods, 'bearer'],
    dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
  }
  if (mtlsAliases) {
    const u = new URL(base)
    u.protocol = 'https:'
    u.port = String(config.control.tlsPort)
    const tls = u.toString().replace(/\/+$/, '')
    doc.tls_client_certificate_bound_access_tokens = true
    doc.mtls_endpoint_aliases = {
      token_endpoint: `${tls}/oauth2/token`,
      revocation_endpoint: `${tls}/oauth2/revoke`,
      introspection_endpoint: `${tls}/oauth2/introspect`,
    }
  }
  return doc
}

export async function metadataRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  app.get('/.well-known/oauth-authorization-server', async (_req, reply) => {
    reply.header('cache-control', 'public, max-age=300')
    return authorizationServerMetadata(deps)
  })
}
