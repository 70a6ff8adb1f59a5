/**
 * The policy module's public surface (docs/reference.md "Policy"): the engine
 * contract, the built-in strict engine, the Cedar compiler, the obligations
 * helper and the policy test runner.
 */
export type { Decision, Obligation, PolicyBundleSource, PolicyCompiler, PolicyEngine, PolicyPrincipal, PolicyRequest, PolicyResult } from './types.js'
export { StrictEngine } from './strict.js'
export { CedarCompiler, CedarEngine, validatePolicyText, type CedarEngineOptions } from './cedar/engine.js'
export { CedarSyntaxError, analyzeBundle, type CedarProblem, type PolicyMeta } from './cedar/analyze.js'
export { AEGIS_CEDAR_SCHEMA, bundleSchemaText } from './cedar/schema.js'
export { applyObligations, parsePointer, REDACTED } from './sanitize.js'
export { runPolicyTests, formatReport, type PolicyTestCase, type PolicyTestReport } from './test-runner.js'
