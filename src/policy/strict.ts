import type { PolicyEngine, PolicyRequest, PolicyResult } from './types.js'

/**
 * The engine used when a tenant has no active policy bundle: the tool must be
 * in the agent's capability manifest, else deny. Also the first check in
 * front of every Cedar bundle, so a policy can never grant a tool the agent
 * was not registered for.
 */
export class StrictEngine implements PolicyEngine {
  evaluate(request: PolicyRequest): PolicyResult {
    const allowed = request.principal.capabilities.includes(request.action)
    return {
      decision: allowed ? 'allow' : 'deny',
      reasons: [allowed ? 'capability:granted' : `capability:missing (${request.action} is not in the agent's capability manifest)`],
      policyIds: [],
      obligations: [],
      risk: 'normal',
      policyVersion: 'none',
      mode: 'enforce',
    }
  }
}
