/** The control-plane role: what cli/ and other roles import. */
export { buildControlPlane, type ControlPlane } from './app.js'
export type { ControlPlaneDeps } from './deps.js'
export { KpiBook, kpiBook } from './admin/kpis.js'
export { buildFeedSnapshot, recordRevocation, revocationMatches } from './revocation/index.js'
export { authorizationServerMetadata } from './token/metadata.js'
export { createKeyManager, effectiveKeys, loadKek, type PublicKeyInfo } from './keys/index.js'
export { TokenIssuer, directoryFor } from './token/index.js'
export { allowedAudiences } from './token/request-scope.js'
export type { AgentState, AgentTuple, FeedEvent, FeedSnapshot, FeedSummary, KeysState, PolicyState, RevocationTuple } from './feed/events.js'
export {
  createAuditWriter,
  exportAudit,
  headsFile,
  parseHeads,
  parseJwks,
  verifyAuditExport,
  verifyAuditStore,
  type AuditVerifyReport,
  type ChainHead,
  type Jwks,
} from './audit/index.js'
