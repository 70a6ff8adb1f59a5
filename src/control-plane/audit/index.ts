export type { AuditWriter } from './types.js'
export { createAuditWriter, type AuditWriterDeps, type ChainAuditWriter } from './writer.js'
export {
  verifyAuditStore,
  exportAudit,
  verifyAuditExport,
  parseJwks,
  parseHeads,
  headsFile,
  EXPORT_FORMAT,
  HEADS_FORMAT,
  type AuditVerifyReport,
  type AuditProblem,
  type ChainReport,
  type ChainHead,
  type Jwks,
  type KeySource,
  type VerifyOptions,
} from './verify.js'
export { eventHash, eventToWire, checkpointToWire, GENESIS_HASH, CHECKPOINT_TYP } from './chain.js'
export { auditRoutes } from './routes.js'
