/**
 * The gateway role (docs/reference.md "Gateway", "Revocation"). Other roles and the
 * CLI reach it only through this file.
 */
export { buildGateway, DEFAULT_TUNING } from './app.js'
export type { Gateway, GatewayOverrides } from './app.js'
export type {
  ApprovalContext,
  ApprovalHook,
  ApprovalRef,
  ApprovalResolution,
  BackendHealth,
  DecisionSink,
  EntryMode,
  GatewayAuditEvent,
  GatewayDeps,
  GatewayTuning,
} from './deps.js'
export { DecisionPipeline } from './pipeline/index.js'
export type { DecisionOutcome, DecisionRequest, TokenView } from './pipeline/index.js'
export { GatewayState } from './state.js'
export { ManifestCache } from './manifests.js'
export { LogDecisionSink, MemoryDecisionSink, TeeDecisionSink } from './decision-sink.js'
export { isReadAction } from './pipeline/action-class.js'
