/**
 * What the gateway asks a policy engine and what it gets back. docs/reference.md
 * "Policy": principal = the agent, action = the tool, resource = the target,
 * context = the call parameters (+ time, client address, override present).
 */
export type Decision = 'allow' | 'deny' | 'approval_needed' | 'sanitize'

export interface PolicyPrincipal {
  tenant: string
  agentId: string
  clientId: string
  scopes: string[]
  capabilities: string[]
}

export interface PolicyRequest {
  principal: PolicyPrincipal
  /** The tool, e.g. `payments.transfer`. */
  action: string
  /** The call's target, or null. */
  resource: string | null
  /** The call parameters (untrusted JSON, already bounded in size and depth). */
  params: Record<string, unknown>
  /** Epoch seconds. */
  time: number
  clientAddress: string | null
  /** A one-time approval override token accompanies the call. */
  override: boolean
  /** Reverse-proxy mode: the HTTP request as it is forwarded (`context.http`). */
  http?: HttpCall
  /** A delegated token's chain (`context.delegation`, docs/delegation.md); absent for an agent's own token. */
  delegation?: PolicyDelegation
  /**
   * The exact JSON text `params` was parsed from, when the caller has it (a
   * proxied JSON body): a cache key for the parameters that costs nothing to
   * compute. Same text, same params; never read for the decision itself.
   */
  paramsText?: string
}

/** A delegated token's chain as policy sees it (`context.delegation`). */
export interface PolicyDelegation {
  /** Agent ids from the original subject to the current actor (a Set in Cedar; `origin` and `actor` keep the ends). */
  readonly chain: readonly string[]
  /** Number of `act` levels. */
  readonly depth: number
  /** The person the chain acts for, when a person delegated. */
  readonly user: string | null
  readonly userIssuer: string | null
  /** Resource ids the person's token listed (the trusted issuer's `resources_claim`). */
  readonly userResources: readonly string[]
}

/**
 * A proxied HTTP request as the policy sees it and as it is forwarded:
 * `path` is the decoded path below the route's prefix, `query` the decoded
 * query (a repeated key gives an array, in order).
 */
export interface HttpCall {
  method: string
  path: string
  query: Record<string, string | string[]>
  /** `json` (parsed into params), `opaque` (route declares it; only its digest is seen), `none`. */
  body: 'json' | 'opaque' | 'none'
  /** base64url SHA-256 of the opaque body's bytes. */
  bodySha256?: string
}

/** An obligation the enforcer applies; `path` is an RFC 6901 JSON pointer rooted at the request (`/params/card_number`). */
export interface Obligation {
  type: 'redact'
  path: string
}

export interface PolicyResult {
  decision: Decision
  /** Human-readable reasons naming the determining policy ids. */
  reasons: string[]
  /** Ids of the determining policies. */
  policyIds: string[]
  obligations: Obligation[]
  /** Approver group from `@approval("group")`, when decision is approval_needed. */
  approvalGroup?: string
  /**
   * On `approval_needed`: what the same call is decided once a valid
   * override for exactly it accompanies it (`context.override` true, the
   * approval forbids set aside). Always `allow` or `sanitize`, with the
   * obligations an approved call still carries. The gateway uses it only
   * after it has verified the override.
   */
  approved?: PolicyResult
  /** `@approval_via("console")`: only a console (admin login) decision counts. */
  requireConsole?: boolean
  /** `@risk("high")`: the call's jti is single-use. */
  risk: 'high' | 'normal'
  /**
   * Optional `@action_class("read"|"write")` of the determining policies. The
   * gateway uses it to classify the call during a Redis outage; absent, a tool
   * whose last name segment starts with read/get/list/search counts as a read.
   */
  actionClass?: 'read' | 'write'
  /** Version of the bundle that decided ("strict" for the built-in engine). */
  policyVersion: string
  /** Shadow bundles are computed and counted, never enforced. */
  mode: 'enforce' | 'shadow'
}

/** Evaluates one concrete call. Must not throw for bad params: a failed evaluation is `deny`. */
export interface PolicyEngine {
  evaluate(request: PolicyRequest): PolicyResult
}

/** A bundle as the gateway receives it from the feed. */
export interface PolicyBundleSource {
  id: string
  tenant: string
  version: string
  cedar: string
  mode: 'enforce' | 'shadow'
}

/**
 * Turns a bundle into a ready engine, once per activation (parse once, never
 * per call). Throws AegisError('invalid_request') with line/column for bad
 * policy text. The gateway swaps engines atomically, so a decision never sees
 * a half-loaded bundle. The strict capability check runs before any engine.
 */
export interface PolicyCompiler {
  compile(bundle: PolicyBundleSource): PolicyEngine
}
