import type { HttpCall, PolicyEngine, PolicyPrincipal, PolicyRequest, PolicyResult } from '../../policy/types.js'
import type { GatewayDeps } from '../deps.js'
import type { VerifiedManifest } from '../manifests.js'
import type { TenantPolicy } from '../state.js'
import type { TokenView } from './token-view.js'

/** The strict engine's allow, shared: its fields are never mutated. */
const STRICT_ALLOW: PolicyResult = Object.freeze({
  decision: 'allow',
  reasons: Object.freeze(['capability:granted']) as unknown as string[],
  policyIds: Object.freeze([]) as unknown as string[],
  obligations: Object.freeze([]) as unknown as PolicyResult['obligations'],
  risk: 'normal',
  policyVersion: 'none',
  mode: 'enforce',
}) as PolicyResult

/** The evaluation when the tenant has no bundle: shared, as STRICT_ALLOW is (nothing mutates an Evaluation). */
const STRICT_EVALUATION: Evaluation = Object.freeze({ result: STRICT_ALLOW, tenantPolicy: undefined, candidate: null, shadow: false })

/** A call as the pipeline evaluates it. */
export interface PolicyCall {
  tool: string
  params: Record<string, unknown>
  resource: string | null
  clientAddress: string | null
  http?: HttpCall
  paramsText?: string
}

/** The decision plus the candidate bundle's, when one is evaluated side by side. */
export interface Evaluation {
  result: PolicyResult
  tenantPolicy: TenantPolicy | undefined
  candidate: PolicyResult | null
  /** The deciding bundle runs in shadow mode: computed and counted, not enforced. */
  shadow: boolean
}

/** The token's principal, built once per token (its manifest never changes: the hash is in the token). */
export function principalOf(view: TokenView, manifest: VerifiedManifest): PolicyPrincipal {
  let p = view.principal
  if (p === null) {
    p = Object.freeze({
      tenant: view.facts.tenant,
      agentId: view.facts.agentId,
      clientId: view.facts.clientId,
      scopes: view.scopes as string[],
      capabilities: manifest.capabilities as string[],
    })
    view.principal = p
  }
  return p
}

/**
 * Step 5 (docs/reference.md "Gateway", "Policy"): the strict capability check first
 * (a policy can never grant a tool outside the agent's manifest), then the
 * tenant's active bundle, if any. An engine that throws gives `deny`.
 */
export function evaluatePolicy(deps: GatewayDeps, view: TokenView, manifest: VerifiedManifest, call: PolicyCall, nowSeconds: number): Evaluation {
  const tenantPolicy = deps.state.policyFor(view.facts.tenant)
  if (!manifest.capabilitySet.has(call.tool)) {
    return {
      result: {
        decision: 'deny',
        reasons: [`capability:missing (${call.tool} is not in the agent's capability manifest)`],
        policyIds: [],
        obligations: [],
        risk: 'normal',
        policyVersion: tenantPolicy?.version ?? 'none',
        mode: 'enforce',
      },
      tenantPolicy,
      candidate: null,
      shadow: false,
    }
  }
  if (tenantPolicy === undefined) return STRICT_EVALUATION
  const request: PolicyRequest = {
    principal: principalOf(view, manifest),
    action: call.tool,
    resource: call.resource,
    params: call.params,
    time: nowSeconds,
    clientAddress: call.clientAddress,
    // Never from the header itself: an unchecked override must not change a
    // decision. The engine evaluates the approved case (`override` true) on
    // `approval_needed`, and the pipeline uses that only once the approval
    // hook has verified an override for exactly this call.
    override: false,
  }
  if (call.http !== undefined) request.http = call.http
  if (view.delegation !== null) request.delegation = view.delegation
  if (call.paramsText !== undefined) request.paramsText = call.paramsText
  const result = safeEvaluate(deps, tenantPolicy.engine, request, tenantPolicy.version)
  const candidate = tenantPolicy.candidate ? safeEvaluate(deps, tenantPolicy.candidate.engine, request, tenantPolicy.candidate.version) : null
  // Results are the engine's (possibly shared) objects: never mutated, the bundle's mode travels beside them.
  return { result, tenantPolicy, candidate, shadow: tenantPolicy.mode === 'shadow' || result.mode === 'shadow' }
}

function safeEvaluate(deps: GatewayDeps, engine: PolicyEngine, request: PolicyRequest, version: string): PolicyResult {
  try {
    return engine.evaluate(request)
  } catch (err) {
    deps.logger.error({ err, tenant: request.principal.tenant, version }, 'policy engine threw; denying')
    return {
      decision: 'deny',
      reasons: ['policy:error (evaluation failed)'],
      policyIds: [],
      obligations: [],
      risk: 'normal',
      policyVersion: version,
      mode: 'enforce',
    }
  }
}
