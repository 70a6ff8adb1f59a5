import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AegisConfig, RouteConfig } from '../../../config/schema.js'

/** RFC 9728 §3: where a protected resource publishes its metadata. */
export const PRM_PATH = '/.well-known/oauth-protected-resource'

/**
 * The gateway's origin as the client reached it. Taken from the request
 * (the gateway has no configured public URL); characters that could break
 * out of a quoted header parameter are dropped.
 */
export function originOf(request: FastifyRequest): string {
  const host = (request.host || 'localhost').replace(/[^A-Za-z0-9.:[\]-]/g, '')
  return `${request.protocol === 'https' ? 'https' : 'http'}://${host}`
}

/** The metadata URL of an MCP route (RFC 9728 §3.1: the well-known path, then the resource's path). */
export function metadataUrl(request: FastifyRequest, routePath: string): string {
  return originOf(request) + PRM_PATH + routePath
}

/**
 * The `WWW-Authenticate` of a 401 from an MCP route (MCP authorization spec,
 * RFC 9728 §5.1, RFC 6750 §3): points the client at the metadata.
 */
export function mcpWwwAuthenticate(request: FastifyRequest, routePath: string, description: string): string {
  return `Bearer resource_metadata="${metadataUrl(request, routePath)}", error="invalid_token", error_description="${description.replace(/["\\\r\n]/g, '')}"`
}

function body(config: AegisConfig, resource: string, scopes: string[]): Record<string, unknown> {
  return {
    resource,
    authorization_servers: [config.issuer],
    bearer_methods_supported: ['header'],
    scopes_supported: scopes,
    resource_name: 'Aegis gateway',
  }
}

/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728), as the MCP
 * authorization spec asks of an MCP server: `GET
 * /.well-known/oauth-protected-resource` for the gateway as a whole (its
 * origin; `scopes_supported` is the union of the routes') and
 * `/.well-known/oauth-protected-resource<route path>` for each MCP route
 * (resource = origin + route path). The authorization server is the Aegis
 * issuer.
 */
export function registerProtectedResourceMetadata(app: FastifyInstance, config: AegisConfig, routes: readonly RouteConfig[]): void {
  const all = [...new Set(routes.flatMap((r) => r.scopes ?? []))]
  app.get(PRM_PATH, async (request, reply) => {
    return reply.header('cache-control', 'max-age=300').send(body(config, originOf(request), all))
  })
  for (const r of routes) {
    const path = r.path.replace(/\/+$/, '')
    app.get(PRM_PATH + path, async (request, reply) => {
      return reply.header('cache-control', 'max-age=300').send(body(config, originOf(request) + path, r.scopes ?? []))
    })
  }
}
