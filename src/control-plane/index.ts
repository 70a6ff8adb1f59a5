/** The control-plane role: what cli/ and other roles import. */
export { buildControlPlane, type ControlPlane } from './app.js'
export type { ControlPlaneDeps } from './deps.js'
export { KpiBook, kpiBook } from './admin/kpis.js'
export { buildFeedSnapshot, recordRevocation, revocationMatches } from './revocation/index.js'
export { authorizationServerMetadata } from './token/metadata.js'
