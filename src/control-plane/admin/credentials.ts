/**
 * `POST /admin/v1/tenants/{t}/agents/{a}/bootstrap-credentials`
 * `{ttl_seconds, single_use}` → `{client_id, client_secret, expires_at}`.
 * The secret (256 random bits) is shown once; the store keeps its SHA-256.
 */
import type { FastifyInstance } from 'fastify'
import { Conflict, NotFound } from '../../errors.js'
import { assertTenantAccess, requireRole } from '../../http/admin-auth.js'
import { sha256b64url } from '../../lib/hash.js'
import { randomId, randomSecret } from '../../lib/ids.js'
import type { BootstrapCredential } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { auditAdmin, idParam, jsonBody, optBool, optInt, principal } from './validate.js'

export async function credentialRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const admin = requireRole(deps.store, ['admin'], deps.sessions)

  app.post('/tenants/:tenant/agents/:agent/bootstrap-credentials', { preHandler: admin }, async (request, reply) => {
    const p = principal(request)
    const tenantId = idParam(request.params, 'tenant')
    const agentId = idParam(request.params, 'agent')
    assertTenantAccess(p, tenantId)
    const body = jsonBody(request, ['ttl_seconds', 'single_use'])
    const ttl = optInt(body, 'ttl_seconds', 1, 86400) ?? 300
    const singleUse = optBool(body, 'single_use') ?? false
    const tenant = await deps.store.tenants.get(tenantId)
    if (!tenant) throw new NotFound(`tenant ${tenantId} not found`)
    const agent = await deps.store.agents.get(tenantId, agentId)
    if (!agent) throw new NotFound(`agent ${agentId} not found`)
    if (agent.tokenEndpointAuthMethod !== 'client_secret_basic' && agent.tokenEndpointAuthMethod !== 'client_secret_post') {
      throw new Conflict(`agent ${agentId} authenticates with ${agent.tokenEndpointAuthMethod}: bootstrap secrets are refused`)
    }
    if (tenant.requireAttestation) throw new Conflict(`tenant ${tenantId} requires attestation: bootstrap secrets are refused`)
    const secret = randomSecret(32)
    const now = deps.clock.now()
    const cred: BootstrapCredential = {
      clientId: randomId('bc', 16), tenant: tenantId, agentId, secretHash: sha256b64url(secret), expiresAt: now + ttl * 1000, singleUse, usedAt: null, createdAt: now,
    }
    await deps.store.credentials.create(cred)
    await auditAdmin(deps, p, { type: 'admin.credential_created', tenant: tenantId, subject: agentId, data: { client_id: cred.clientId, ttl_seconds: ttl, single_use: singleUse, expires_at: cred.expiresAt } })
    reply.code(201).header('cache-control', 'no-store')
    return { client_id: cred.clientId, client_secret: secret, expires_at: cred.expiresAt, single_use: singleUse, tenant: tenantId, agent_id: agentId }
  })
}
