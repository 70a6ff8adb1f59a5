/**
 * `POST /admin/v1/tenants/{t}/agents/{a}/bootstrap-credentials`
 * `{ttl_seconds, single_use}` → `{client_id, client_secret, expires_at}`.
 * The secret (256 random bits) is shown once; the store keeps its SHA-256.
 */
import type { FastifyInstance } from 'fastify'
import { Conflict, NotFound } from '../../errors.js'
import { sha256b64url } from '../../lib/hash.js'
import { randomId, randomSecret } from '../../lib/ids.js'
import type { BootstrapCredential } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { TAGS, allow, body, int, tenantAgentParams } from './schemas.js'
import { tenantOf, tenantScope } from './tenant-scope.js'
import { auditAdmin, principal } from './validate.js'
import { epochSeconds } from '../../lib/clock.js'

const CredentialBody = body({ ttl_seconds: int(1, 86400), single_use: { type: 'boolean' } })

export async function credentialRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  await tenantScope(app, deps, async (scope) => {
    scope.post<{ Params: { agent: string }; Body: { ttl_seconds?: number; single_use?: boolean } }>(
      '/agents/:agent/bootstrap-credentials',
      {
        config: allow(['admin'], { json: true }),
        schema: {
          tags: [TAGS.agents],
          summary: 'Mint a bootstrap credential for an agent (the secret is shown once)',
          params: tenantAgentParams,
          body: CredentialBody,
        },
      },
      async (request, reply) => {
        const p = principal(request)
        const tenant = tenantOf(request)
        const tenantId = tenant.id
        const agentId = request.params.agent
        const ttl = request.body.ttl_seconds ?? 300
        const singleUse = request.body.single_use ?? false
        const agent = await deps.store.agents.get(tenantId, agentId)
        if (!agent) throw new NotFound(`agent ${agentId} not found`)
        if (agent.tokenEndpointAuthMethod !== 'client_secret_basic' && agent.tokenEndpointAuthMethod !== 'client_secret_post') {
          throw new Conflict(`agent ${agentId} authenticates with ${agent.tokenEndpointAuthMethod}: bootstrap secrets are refused`)
        }
        if (tenant.requireAttestation) throw new Conflict(`tenant ${tenantId} requires attestation: bootstrap secrets are refused`)
        const secret = randomSecret(32)
        const now = deps.clock.now()
        const cred: BootstrapCredential = {
          clientId: randomId('bc', 16),
          tenant: tenantId,
          agentId,
          secretHash: sha256b64url(secret),
          expiresAt: now + ttl * 1000,
          singleUse,
          usedAt: null,
          createdAt: now,
        }
        await deps.store.credentials.create(cred)
        await auditAdmin(deps, p, {
          type: 'admin.credential_created',
          tenant: tenantId,
          subject: agentId,
          data: { client_id: cred.clientId, ttl_seconds: ttl, single_use: singleUse, expires_at: cred.expiresAt },
        })
        reply.code(201).header('cache-control', 'no-store')
        return {
          client_id: cred.clientId,
          client_secret: secret,
          expires_at: epochSeconds(cred.expiresAt),
          single_use: singleUse,
          tenant: tenantId,
          agent_id: agentId,
        }
      },
    )
  })
}
