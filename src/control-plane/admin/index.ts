/**
 * The admin API plugins of this module, registered under `/admin/v1` by
 * control-plane/app.ts. Keys, audit, policies and approvals register their
 * own routes.
 */
import type { FastifyInstance } from 'fastify'
import { installAdminGuard } from '../../http/admin-auth.js'
import type { ControlPlaneDeps } from '../deps.js'
import { adminTokenRoutes } from './admin-tokens.js'
import { agentRoutes } from './agents.js'
import { credentialRoutes } from './credentials.js'
import { decisionRoutes } from './decisions.js'
import { feedRoutes } from './feed.js'
import { kpiRoutes } from './kpis.js'
import { manifestRoutes } from './manifests.js'
import { revocationRoutes } from './revocations.js'
import { tenantRoutes } from './tenants.js'
import { trustedIssuerRoutes } from './trusted-issuers.js'

export { adminTokenRoutes, adminTokenJson, newAdminTokenSecret } from './admin-tokens.js'
export { agentRoutes, agentJson } from './agents.js'
export { credentialRoutes } from './credentials.js'
export { feedRoutes, type FeedRoutesOptions } from './feed.js'
export { kpiRoutes, KpiBook, kpiBook } from './kpis.js'
export { manifestRoutes } from './manifests.js'
export { revocationRoutes } from './revocations.js'
export { tenantRoutes, tenantJson } from './tenants.js'
export { trustedIssuerRoutes, trustedIssuerJson } from './trusted-issuers.js'

/** Every admin plugin of this module; call inside a `/admin/v1`-prefixed scope. */
export async function adminRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  installAdminGuard(app, deps.store, deps.sessions) // no-op when the scope it is registered in has it
  await adminTokenRoutes(app, deps)
  await tenantRoutes(app, deps)
  await agentRoutes(app, deps)
  await credentialRoutes(app, deps)
  await manifestRoutes(app, deps)
  await trustedIssuerRoutes(app, deps)
  await revocationRoutes(app, deps)
  await feedRoutes(app, deps)
  await kpiRoutes(app, deps)
  await decisionRoutes(app, deps)
}
