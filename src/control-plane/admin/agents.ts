/**
 * `/admin/v1/tenants/{t}/agents`: register, list, read, update and delete
 * agents. Each change recomputes the capability manifest (stored
 * content-addressed) and its hash, and publishes an `agent` feed event so
 * gateways refuse tokens minted against an older manifest.
 */
import type { FastifyInstance } from 'fastify'
import { InvalidRequest, NotFound } from '../../errors.js'
import { buildManifest, capabilityHash } from '../../lib/capability.js'
import { randomId } from '../../lib/ids.js'
import type { Agent, AgentPatch, TokenEndpointAuthMethod } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { directoryFor } from '../token/directory.js'
import {
  ID_PATTERN,
  TAGS,
  allow,
  body,
  int,
  nullableStr,
  publicJwksSchema,
  str,
  strArray,
  tenantAgentParams,
  tenantParams,
  type JsonSchema,
} from './schemas.js'
import { tenantOf, tenantScope } from './tenant-scope.js'
import { auditAdmin, checkJwkSizes, principal, publishChange } from './validate.js'
import { epochSeconds } from '../../lib/clock.js'

const AUTH_METHODS: readonly TokenEndpointAuthMethod[] = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth']
/** RFC 6749 §3.3 scope-token. */
const SCOPE_PATTERN = '^[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,128}$'
const TOOL_PATTERN = '^[A-Za-z0-9._:/-]{1,128}$'
const AUDIENCE_PATTERN = '^[\\x21-\\x7E]{1,512}$'

/** Every settable field of an agent; absent = not given. */
const AGENT_FIELDS: Record<string, JsonSchema> = {
  scopes: strArray(100, str(128, SCOPE_PATTERN)),
  capabilities: strArray(1000, str(128, TOOL_PATTERN)),
  schemas: {
    type: ['object', 'null'],
    description: 'tool name → JSON Schema of its parameters (each tool must be among capabilities)',
    maxProperties: 1000,
    propertyNames: { type: 'string', pattern: TOOL_PATTERN },
    additionalProperties: { type: ['object', 'boolean'] },
  },
  max_ttl_seconds: int(1, 3600),
  audiences: strArray(20, str(512, AUDIENCE_PATTERN)),
  token_endpoint_auth_method: { type: 'string', enum: AUTH_METHODS },
  jwks: { ...publicJwksSchema, type: ['object', 'null'], description: 'RFC 7517 JWK Set of public keys (for private_key_jwt)' },
  tls_client_auth_subject_dn: nullableStr(512),
  tls_client_auth_san_uri: nullableStr(512),
  tls_client_auth_san_dns: nullableStr(253),
  delegates: { ...strArray(100, str(64, ID_PATTERN)), description: 'agents of this tenant this one may delegate to (token exchange with an actor_token)' },
}
const AgentBody = body({ agent_id: str(64, ID_PATTERN), ...AGENT_FIELDS }, ['agent_id'])
const AgentPatchBody = body(AGENT_FIELDS)

/** A body as the schema above lets it through. */
interface AgentFieldsBody {
  scopes?: string[]
  capabilities?: string[]
  schemas?: Record<string, unknown> | null
  max_ttl_seconds?: number
  audiences?: string[]
  token_endpoint_auth_method?: TokenEndpointAuthMethod
  jwks?: { keys: Record<string, unknown>[] } | null
  tls_client_auth_subject_dn?: string | null
  tls_client_auth_san_uri?: string | null
  tls_client_auth_san_dns?: string | null
  delegates?: string[]
}

/**
 * Admin-API view of an agent (times in epoch seconds). An agent registered without
 * `audiences` shows what it may get: `[AEGIS_AUDIENCE]` (docs/reference.md
 * §Agents; stored empty, so it follows that setting).
 */
export function agentJson(a: Agent, defaultAudience: string): Record<string, unknown> {
  return {
    tenant: a.tenant,
    agent_id: a.agentId,
    client_id: a.clientId,
    scopes: a.scopes,
    capabilities: a.capabilities,
    schemas: a.schemas,
    max_ttl_seconds: a.maxTtlSeconds,
    audiences: a.audiences.length > 0 ? a.audiences : [defaultAudience],
    token_endpoint_auth_method: a.tokenEndpointAuthMethod,
    jwks: a.jwks,
    tls_client_auth_subject_dn: a.tlsClientAuthSubjectDn,
    tls_client_auth_san_uri: a.tlsClientAuthSanUri,
    tls_client_auth_san_dns: a.tlsClientAuthSanDns,
    capability_hash: a.capabilityHash,
    delegates: a.delegates ?? [],
    created_at: epochSeconds(a.createdAt),
    updated_at: epochSeconds(a.updatedAt),
  }
}

/**
 * The given fields as a patch. Checked here rather than in the schema: the
 * TTL bound comes from configuration (the published schema says 3600, the
 * hard cap), and a JWK's serialized size is beyond JSON Schema.
 */
function readFields(b: AgentFieldsBody, maxTtl: number): AgentPatch {
  const patch: AgentPatch = {}
  if (b.scopes) patch.scopes = [...new Set(b.scopes)]
  if (b.capabilities) patch.capabilities = [...new Set(b.capabilities)]
  if (b.schemas !== undefined) patch.schemas = b.schemas === null || Object.keys(b.schemas).length === 0 ? null : b.schemas
  if (b.max_ttl_seconds !== undefined) {
    if (b.max_ttl_seconds > maxTtl) throw new InvalidRequest(`max_ttl_seconds must be an integer from 1 to ${maxTtl}`)
    patch.maxTtlSeconds = b.max_ttl_seconds
  }
  if (b.audiences) patch.audiences = [...new Set(b.audiences)]
  if (b.token_endpoint_auth_method !== undefined) patch.tokenEndpointAuthMethod = b.token_endpoint_auth_method
  if (b.jwks !== undefined) patch.jwks = b.jwks === null ? null : checkJwkSizes(b.jwks, 'jwks')
  if (b.tls_client_auth_subject_dn !== undefined) patch.tlsClientAuthSubjectDn = b.tls_client_auth_subject_dn
  if (b.tls_client_auth_san_uri !== undefined) patch.tlsClientAuthSanUri = b.tls_client_auth_san_uri
  if (b.tls_client_auth_san_dns !== undefined) patch.tlsClientAuthSanDns = b.tls_client_auth_san_dns
  if (b.delegates) patch.delegates = [...new Set(b.delegates)].sort()
  return patch
}

/** Cross-field rules on the resulting agent. */
function checkAgent(
  a: Pick<Agent, 'capabilities' | 'schemas' | 'tokenEndpointAuthMethod' | 'jwks' | 'tlsClientAuthSubjectDn' | 'tlsClientAuthSanUri' | 'tlsClientAuthSanDns'>,
): void {
  if (a.schemas) {
    for (const tool of Object.keys(a.schemas)) {
      if (!a.capabilities.includes(tool)) throw new InvalidRequest(`schemas.${tool} names a tool not in capabilities`)
    }
  }
  if (a.tokenEndpointAuthMethod === 'private_key_jwt' && !a.jwks) throw new InvalidRequest('private_key_jwt needs jwks')
  if (a.tokenEndpointAuthMethod === 'tls_client_auth' && !a.tlsClientAuthSubjectDn && !a.tlsClientAuthSanUri && !a.tlsClientAuthSanDns) {
    throw new InvalidRequest('tls_client_auth needs tls_client_auth_subject_dn, tls_client_auth_san_uri or tls_client_auth_san_dns')
  }
}

export async function agentRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const dir = directoryFor(deps)
  const maxTtl = Math.min(3600, deps.config.tokens.maxTtlSeconds)
  const ADMIN = allow(['admin'])
  const ADMIN_JSON = allow(['admin'], { json: true })

  async function storeManifest(capabilities: string[], schemas: Record<string, unknown> | null): Promise<string> {
    const manifest = buildManifest(capabilities, schemas)
    const hash = capabilityHash(manifest)
    await deps.store.manifests.put(hash, manifest)
    return hash
  }

  async function published(a: Agent, hash: string | null): Promise<void> {
    dir.invalidateAgent(a.tenant, a.agentId)
    await publishChange(deps, () => deps.feed.publish({ kind: 'agent', agent: { tenant: a.tenant, agentId: a.agentId, capabilityHash: hash } }))
  }

  await tenantScope(app, deps, async (scope) => {
    scope.post<{ Body: AgentFieldsBody & { agent_id: string } }>(
      '/agents',
      { config: ADMIN_JSON, schema: { tags: [TAGS.agents], summary: 'Register an agent', params: tenantParams, body: AgentBody } },
      async (request, reply) => {
        const tenant = tenantOf(request).id
        const agentId = request.body.agent_id
        const f = readFields(request.body, maxTtl)
        const now = deps.clock.now()
        const base = {
          scopes: f.scopes ?? [],
          capabilities: [...(f.capabilities ?? [])].sort(),
          schemas: f.schemas ?? null,
          maxTtlSeconds: f.maxTtlSeconds ?? maxTtl,
          audiences: f.audiences ?? [],
          tokenEndpointAuthMethod: f.tokenEndpointAuthMethod ?? 'client_secret_basic',
          jwks: f.jwks ?? null,
          tlsClientAuthSubjectDn: f.tlsClientAuthSubjectDn ?? null,
          tlsClientAuthSanUri: f.tlsClientAuthSanUri ?? null,
          tlsClientAuthSanDns: f.tlsClientAuthSanDns ?? null,
          delegates: f.delegates ?? [],
        }
        checkAgent(base)
        const hash = await storeManifest(base.capabilities, base.schemas)
        const agent: Agent = {
          ...base,
          tenant,
          agentId,
          clientId: randomId('ag', 12),
          tlsClientAuthThumbprint: null,
          capabilityHash: hash,
          createdAt: now,
          updatedAt: now,
        }
        await deps.store.agents.create(agent)
        await auditAdmin(deps, principal(request), {
          type: 'admin.agent_created',
          tenant,
          subject: agentId,
          data: {
            scopes: agent.scopes,
            capabilities: agent.capabilities,
            capability_hash: hash,
            max_ttl_seconds: agent.maxTtlSeconds,
            token_endpoint_auth_method: agent.tokenEndpointAuthMethod,
          },
        })
        await published(agent, hash)
        reply.code(201)
        return agentJson(agent, deps.config.audience)
      },
    )

    scope.get('/agents', { config: ADMIN, schema: { tags: [TAGS.agents], summary: "List a tenant's agents", params: tenantParams } }, async (request) => {
      return { agents: (await deps.store.agents.list(tenantOf(request).id)).map((a) => agentJson(a, deps.config.audience)) }
    })

    scope.get<{ Params: { agent: string } }>(
      '/agents/:agent',
      { config: ADMIN, schema: { tags: [TAGS.agents], summary: 'Read an agent', params: tenantAgentParams } },
      async (request) => {
        const agentId = request.params.agent
        const a = await deps.store.agents.get(tenantOf(request).id, agentId)
        if (!a) throw new NotFound(`agent ${agentId} not found`)
        return agentJson(a, deps.config.audience)
      },
    )

    scope.patch<{ Params: { agent: string }; Body: AgentFieldsBody }>(
      '/agents/:agent',
      {
        config: ADMIN_JSON,
        schema: { tags: [TAGS.agents], summary: 'Update an agent (recomputes its capability manifest)', params: tenantAgentParams, body: AgentPatchBody },
      },
      async (request) => {
        const tenant = tenantOf(request).id
        const agentId = request.params.agent
        const patch = readFields(request.body, maxTtl)
        const current = await deps.store.agents.get(tenant, agentId)
        if (!current) throw new NotFound(`agent ${agentId} not found`)
        if (patch.capabilities) patch.capabilities = [...patch.capabilities].sort()
        const merged = { ...current, ...patch }
        checkAgent(merged)
        const hash = await storeManifest(merged.capabilities, merged.schemas)
        if (hash !== current.capabilityHash) patch.capabilityHash = hash
        const updated = await deps.store.agents.update(tenant, agentId, patch, deps.clock.now())
        await auditAdmin(deps, principal(request), {
          type: 'admin.agent_updated',
          tenant,
          subject: agentId,
          data: { fields: Object.keys(request.body), capability_hash: updated.capabilityHash },
        })
        await published(updated, updated.capabilityHash)
        return agentJson(updated, deps.config.audience)
      },
    )

    scope.delete<{ Params: { agent: string } }>(
      '/agents/:agent',
      { config: ADMIN, schema: { tags: [TAGS.agents], summary: 'Delete an agent and its bootstrap credentials', params: tenantAgentParams } },
      async (request, reply) => {
        const tenant = tenantOf(request).id
        const agentId = request.params.agent
        const current = await deps.store.agents.get(tenant, agentId)
        if (!current) throw new NotFound(`agent ${agentId} not found`)
        await deps.store.credentials.deleteForAgent(tenant, agentId)
        await deps.store.agents.delete(tenant, agentId)
        await auditAdmin(deps, principal(request), { type: 'admin.agent_deleted', tenant, subject: agentId })
        await published(current, null)
        return reply.code(204).send()
      },
    )
  })
}
