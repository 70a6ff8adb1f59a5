/**
 * `/admin/v1/tenants/{t}/agents`: register, list, read, update and delete
 * agents. Each change recomputes the capability manifest (stored
 * content-addressed) and its hash, and publishes an `agent` feed event so
 * gateways refuse tokens minted against an older manifest.
 */
import type { FastifyInstance } from 'fastify'
import { InvalidRequest, NotFound } from '../../errors.js'
import { assertTenantAccess, requireRole } from '../../http/admin-auth.js'
import { buildManifest, capabilityHash } from '../../lib/capability.js'
import { randomId } from '../../lib/ids.js'
import type { Agent, AgentPatch, TokenEndpointAuthMethod } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { directoryFor } from '../token/directory.js'
import { ID_RE, auditAdmin, idParam, jsonBody, optInt, optNullableString, optStringArray, principal, publicJwks, publishChange, reqString, type Json } from './validate.js'

const AUTH_METHODS: readonly TokenEndpointAuthMethod[] = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth']
/** RFC 6749 §3.3 scope-token. */
const SCOPE_RE = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/
const TOOL_RE = /^[A-Za-z0-9._:/-]{1,128}$/
const AUDIENCE_RE = /^[\x21-\x7E]{1,512}$/
const FIELDS = ['agent_id', 'scopes', 'capabilities', 'schemas', 'max_ttl_seconds', 'audiences', 'token_endpoint_auth_method', 'jwks',
  'tls_client_auth_subject_dn', 'tls_client_auth_san_uri', 'tls_client_auth_san_dns'] as const

/** Admin-API view of an agent (times in epoch ms). `audiences: []` means the configured default audience. */
export function agentJson(a: Agent): Record<string, unknown> {
  return {
    tenant: a.tenant,
    agent_id: a.agentId,
    client_id: a.clientId,
    scopes: a.scopes,
    capabilities: a.capabilities,
    schemas: a.schemas,
    max_ttl_seconds: a.maxTtlSeconds,
    audiences: a.audiences,
    token_endpoint_auth_method: a.tokenEndpointAuthMethod,
    jwks: a.jwks,
    tls_client_auth_subject_dn: a.tlsClientAuthSubjectDn,
    tls_client_auth_san_uri: a.tlsClientAuthSanUri,
    tls_client_auth_san_dns: a.tlsClientAuthSanDns,
    capability_hash: a.capabilityHash,
    created_at: a.createdAt,
    updated_at: a.updatedAt,
  }
}

function schemasField(v: unknown): Record<string, unknown> | null | undefined {
  if (v === undefined) return undefined
  if (v === null) return null
  if (typeof v !== 'object' || Array.isArray(v)) throw new InvalidRequest('schemas must be an object of tool name → JSON Schema')
  const entries = Object.entries(v as Json)
  if (entries.length > 1000) throw new InvalidRequest('schemas holds at most 1000 tools')
  for (const [tool, schema] of entries) {
    if (!TOOL_RE.test(tool)) throw new InvalidRequest(`schemas key must match ${TOOL_RE.source}`)
    if (typeof schema !== 'boolean' && (schema === null || typeof schema !== 'object' || Array.isArray(schema))) throw new InvalidRequest(`schemas.${tool} must be a JSON Schema (object or boolean)`)
  }
  return entries.length === 0 ? null : (v as Record<string, unknown>)
}

/** Reads every settable field present in the body (undefined = not given). */
function readFields(body: Json, maxTtl: number): AgentPatch {
  const patch: AgentPatch = {}
  const scopes = optStringArray(body, 'scopes', 100, { max: 128, pattern: SCOPE_RE })
  if (scopes) patch.scopes = scopes
  const caps = optStringArray(body, 'capabilities', 1000, { max: 128, pattern: TOOL_RE })
  if (caps) patch.capabilities = caps
  const schemas = schemasField(body.schemas)
  if (schemas !== undefined) patch.schemas = schemas
  const ttl = optInt(body, 'max_ttl_seconds', 1, maxTtl)
  if (ttl !== undefined) patch.maxTtlSeconds = ttl
  const aud = optStringArray(body, 'audiences', 20, { max: 512, pattern: AUDIENCE_RE })
  if (aud) patch.audiences = aud
  const method = body.token_endpoint_auth_method
  if (method !== undefined) {
    if (typeof method !== 'string' || !(AUTH_METHODS as readonly string[]).includes(method)) throw new InvalidRequest(`token_endpoint_auth_method must be one of ${AUTH_METHODS.join(', ')}`)
    patch.tokenEndpointAuthMethod = method as TokenEndpointAuthMethod
  }
  if (body.jwks !== undefined) patch.jwks = body.jwks === null ? null : publicJwks(body.jwks, 'jwks')
  const dn = optNullableString(body, 'tls_client_auth_subject_dn', { max: 512 })
  if (dn !== undefined) patch.tlsClientAuthSubjectDn = dn
  const uri = optNullableString(body, 'tls_client_auth_san_uri', { max: 512 })
  if (uri !== undefined) patch.tlsClientAuthSanUri = uri
  const dns = optNullableString(body, 'tls_client_auth_san_dns', { max: 253 })
  if (dns !== undefined) patch.tlsClientAuthSanDns = dns
  return patch
}

/** Cross-field rules on the resulting agent. */
function checkAgent(a: Pick<Agent, 'capabilities' | 'schemas' | 'tokenEndpointAuthMethod' | 'jwks' | 'tlsClientAuthSubjectDn' | 'tlsClientAuthSanUri' | 'tlsClientAuthSanDns'>): void {
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
  const admin = requireRole(deps.store, ['admin'], deps.sessions)
  const dir = directoryFor(deps)
  const maxTtl = Math.min(3600, deps.config.tokens.maxTtlSeconds)

  async function tenantOf(params: unknown, request: Parameters<typeof principal>[0]): Promise<string> {
    const tenant = idParam(params, 'tenant')
    assertTenantAccess(principal(request), tenant)
    if (!(await deps.store.tenants.get(tenant))) throw new NotFound(`tenant ${tenant} not found`)
    return tenant
  }

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

  app.post('/tenants/:tenant/agents', { preHandler: admin }, async (request, reply) => {
    const tenant = await tenantOf(request.params, request)
    const body = jsonBody(request, FIELDS)
    const agentId = reqString(body, 'agent_id', { max: 64, pattern: ID_RE })
    const f = readFields(body, maxTtl)
    const now = deps.clock.now()
    const base = {
      scopes: f.scopes ?? [],
      capabilities: [...new Set(f.capabilities ?? [])].sort(),
      schemas: f.schemas ?? null,
      maxTtlSeconds: f.maxTtlSeconds ?? maxTtl,
      audiences: f.audiences ?? [],
      tokenEndpointAuthMethod: f.tokenEndpointAuthMethod ?? 'client_secret_basic',
      jwks: f.jwks ?? null,
      tlsClientAuthSubjectDn: f.tlsClientAuthSubjectDn ?? null,
      tlsClientAuthSanUri: f.tlsClientAuthSanUri ?? null,
      tlsClientAuthSanDns: f.tlsClientAuthSanDns ?? null,
    }
    checkAgent(base)
    const hash = await storeManifest(base.capabilities, base.schemas)
    const agent: Agent = { ...base, tenant, agentId, clientId: randomId('ag', 12), tlsClientAuthThumbprint: null, capabilityHash: hash, createdAt: now, updatedAt: now }
    await deps.store.agents.create(agent)
    await auditAdmin(deps, principal(request), { type: 'admin.agent_created', tenant, subject: agentId, data: { scopes: agent.scopes, capabilities: agent.capabilities, capability_hash: hash, max_ttl_seconds: agent.maxTtlSeconds, token_endpoint_auth_method: agent.tokenEndpointAuthMethod } })
    await published(agent, hash)
    reply.code(201)
    return agentJson(agent)
  })

  app.get('/tenants/:tenant/agents', { preHandler: admin }, async (request) => {
    const tenant = await tenantOf(request.params, request)
    return { agents: (await deps.store.agents.list(tenant)).map(agentJson) }
  })

  app.get('/tenants/:tenant/agents/:agent', { preHandler: admin }, async (request) => {
    const tenant = await tenantOf(request.params, request)
    const agentId = idParam(request.params, 'agent')
    const a = await deps.store.agents.get(tenant, agentId)
    if (!a) throw new NotFound(`agent ${agentId} not found`)
    return agentJson(a)
  })

  app.patch('/tenants/:tenant/agents/:agent', { preHandler: admin }, async (request) => {
    const tenant = await tenantOf(request.params, request)
    const agentId = idParam(request.params, 'agent')
    const body = jsonBody(request, FIELDS.filter((f) => f !== 'agent_id'))
    const patch = readFields(body, maxTtl)
    const current = await deps.store.agents.get(tenant, agentId)
    if (!current) throw new NotFound(`agent ${agentId} not found`)
    if (patch.capabilities) patch.capabilities = [...new Set(patch.capabilities)].sort()
    const merged = { ...current, ...patch }
    checkAgent(merged)
    const hash = await storeManifest(merged.capabilities, merged.schemas)
    if (hash !== current.capabilityHash) patch.capabilityHash = hash
    const updated = await deps.store.agents.update(tenant, agentId, patch, deps.clock.now())
    await auditAdmin(deps, principal(request), { type: 'admin.agent_updated', tenant, subject: agentId, data: { fields: Object.keys(body), capability_hash: updated.capabilityHash } })
    await published(updated, updated.capabilityHash)
    return agentJson(updated)
  })

  app.delete('/tenants/:tenant/agents/:agent', { preHandler: admin }, async (request, reply) => {
    const tenant = await tenantOf(request.params, request)
    const agentId = idParam(request.params, 'agent')
    const current = await deps.store.agents.get(tenant, agentId)
    if (!current) throw new NotFound(`agent ${agentId} not found`)
    await deps.store.credentials.deleteForAgent(tenant, agentId)
    await deps.store.agents.delete(tenant, agentId)
    await auditAdmin(deps, principal(request), { type: 'admin.agent_deleted', tenant, subject: agentId })
    await published(current, null)
    return reply.code(204).send()
  })

}
