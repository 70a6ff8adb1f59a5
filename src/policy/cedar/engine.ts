/**
 * The Cedar policy engine (docs/reference.md "Policy"): a bundle is parsed and
 * validated once per activation, split into per-action slices that are
 * preparsed in the Cedar runtime, and each call is evaluated synchronously
 * against the one slice that can apply to its tool.
 */
import { createHash } from 'node:crypto'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import type { AuthorizationAnswer, Context, EntityJson, Response } from '@cedar-policy/cedar-wasm/nodejs'
import type { Obligation, PolicyBundleSource, PolicyCompiler, PolicyEngine, PolicyRequest, PolicyResult } from '../types.js'
import { LRUCache } from 'lru-cache'
import { InvalidRequest } from '../../errors.js'
import { canonicalJson } from '../../lib/canonical-json.js'
import { analyzeBundle, type AnalyzedBundle, type AnalyzedPolicy, type PolicyMeta } from './analyze.js'
import { buildContext, buildEntities, delegationShapeOf, entityShapeOf, ParamsError, type EntityShape } from './request.js'
import { inActionGroup, PRINCIPAL_TYPE, RESOURCE_TYPE } from './schema.js'

/** A preparsed policy set in the Cedar runtime, or no policies at all. */
interface Slice {
  /** null when no policy can apply: Cedar would deny by default, so no call is made. */
  psetId: string | null
  size: number
  /** Bundle policy id of each policy in the slice, in slice order. */
  ids: string[]
  /** The same policies without the approval forbids (null when there are none). */
  withoutApproval: Slice | null
  /** What of `context.delegation` the slice's policies name (0: none, and Cedar is not sent the chain: it could not read it). */
  delegationShape: number
}

interface ActionPlan {
  slice: Slice
  /** Action groups the tool is a member of (sent as the action entity's parents), or null. */
  parents: string[] | null
}

/**
 * Preparsed sets live in the Cedar runtime's thread-local cache, which has no
 * eviction call. Their ids are content hashes, so compiling the same bundle
 * again (a gateway reconnecting, a candidate becoming active) reuses them
 * instead of growing the cache, and two bundles can never clash on an id.
 */
const preparsed = new Set<string>()

function preparseSlice(policies: AnalyzedPolicy[]): Slice {
  const rest = policies.filter((p) => p.meta.approval === null)
  const shape = (ps: AnalyzedPolicy[]): number => delegationShapeOf(ps.map((p) => p.text).join('\n'))
  return {
    ...preparseSet(policies),
    withoutApproval: rest.length < policies.length ? { ...preparseSet(rest), withoutApproval: null, delegationShape: shape(rest) } : null,
    delegationShape: shape(policies),
  }
}

function preparseSet(policies: AnalyzedPolicy[]): Omit<Slice, 'withoutApproval' | 'delegationShape'> {
  if (policies.length === 0) return { psetId: null, size: 0, ids: [] }
  // One text, not a record of policies: Cedar parses a policy-set text
  // several times faster. Its ids are then policy0…policyN in slice order,
  // mapped back to the bundle's ids through `ids`.
  const text = policies.map((p) => p.text).join('\n')
  const psetId = `aegis:${createHash('sha256').update(text).digest('base64url')}`
  if (!preparsed.has(psetId)) {
    const r = cedar.preparsePolicySet(psetId, { staticPolicies: text })
    if (r.type === 'failure') throw new InvalidRequest(`invalid Cedar policy: ${r.errors.map((e) => e.message).join('; ')}`)
    preparsed.add(psetId)
  }
  return { psetId, size: policies.length, ids: policies.map((p) => p.meta.id) }
}

/** Cedar's slice-local ids (`policy<N>`) → the bundle's policy ids. */
function toBundleIds(slice: Slice, response: Response): Response {
  const map = (id: string): string => {
    const n = /^policy(\d+)$/.exec(id)
    return (n ? slice.ids[Number(n[1])] : undefined) ?? id
  }
  return {
    decision: response.decision,
    diagnostics: {
      reason: response.diagnostics.reason.map(map),
      errors: response.diagnostics.errors.map((e) => ({ ...e, policyId: map(e.policyId) })),
    },
  }
}

function matchesTool(p: AnalyzedPolicy, tool: string): boolean {
  if (p.scope.kind === 'all') return true
  return p.scope.tools.includes(tool) || p.scope.groups.some((g) => inActionGroup(tool, g))
}

/** Options of the engine. */
export interface CedarEngineOptions {
  /**
   * Evaluate every call against the whole bundle instead of its action's
   * slice. Only for tests and benchmarks that compare the two.
   */
  unsliced?: boolean
  /**
   * Also validate against the Aegis schema when compiling (default false:
   * the control plane validated the bundle on upload, and a gateway compiling
   * a large bundle should not spend the time again). Parse and annotation
   * errors are always reported.
   */
  validate?: boolean
  /**
   * Bounded decision cache for repeated identical calls (LRU entries; 0 turns
   * it off). Default 10,000.
   */
  cacheSize?: number
}

const PLAN_CACHE_MAX = 4096
const DEFAULT_CACHE_SIZE = 10_000
/** Calls with larger canonical params are not cached (the key would cost more than it saves). */
const MAX_CACHED_PARAMS = 4096

/**
 * Which context attributes besides params/override the policies may read.
 * Conservative: a `context` the pattern cannot attribute (a whole-record
 * use, `context["time"]`, the word inside a string) counts as reading both.
 */
export function contextReads(text: string): { time: boolean; address: boolean } {
  let time = false
  let address = false
  for (const m of text.matchAll(/\bcontext\b\s*(?:(?:\.|\bhas\b)\s*([A-Za-z_][A-Za-z0-9_]*))?/g)) {
    const attr = m[1]
    if (attr === 'params' || attr === 'override' || attr === 'http' || attr === 'delegation') continue
    if (attr === 'time') time = true
    else if (attr === 'client_address') address = true
    else {
      time = true
      address = true
    }
  }
  return { time, address }
}

/** One compiled bundle. `evaluate` is synchronous and never throws. */
export class CedarEngine implements PolicyEngine {
  readonly bundleId: string
  readonly version: string
  readonly mode: 'enforce' | 'shadow'
  readonly policyCount: number
  private readonly meta = new Map<string, PolicyMeta>()
  private readonly order = new Map<string, number>()
  private readonly toolPlans = new Map<string, ActionPlan>()
  private readonly groupPlans = new Map<string, ActionPlan>()
  /** Declared groups, longest first, so the first match is the deepest. */
  private readonly groups: string[]
  private readonly defaultPlan: ActionPlan
  private readonly unknownPlans = new Map<string, ActionPlan>()
  private readonly whole: Slice | null
  private readonly cache: LRUCache<string, PolicyResult> | null
  /** Whether any policy may read `context.time` / `context.client_address` (decides the cache key). */
  private readonly readsTime: boolean
  private readonly shape: EntityShape
  private readonly readsAddress: boolean

  constructor(bundle: PolicyBundleSource, analyzed: AnalyzedBundle, opts: CedarEngineOptions = {}) {
    this.bundleId = bundle.id
    this.version = bundle.version
    this.mode = bundle.mode
    this.policyCount = analyzed.policies.length
    for (const p of analyzed.policies) {
      this.meta.set(p.meta.id, p.meta)
      this.order.set(p.meta.id, p.index)
    }
    this.groups = [...analyzed.groups].sort((a, b) => b.length - a.length)
    const all = analyzed.policies
    this.whole = opts.unsliced ? preparseSlice(all) : null
    const allText = all.map((p) => p.text).join('\n')
    this.shape = entityShapeOf(allText)
    const reads = contextReads(allText)
    this.readsTime = reads.time
    this.readsAddress = reads.address
    const size = opts.cacheSize ?? DEFAULT_CACHE_SIZE
    this.cache = size > 0 ? new LRUCache<string, PolicyResult>({ max: size }) : null
    const parentsOf = (tool: string): string[] | null => {
      const ps = this.groups.filter((g) => inActionGroup(tool, g))
      return ps.length > 0 ? ps : null
    }
    // Cedar's policy slicing: a slice holds every policy whose action scope
    // can match, a superset is harmless (Cedar still checks the scope), so
    // each tool the bundle names gets its own slice, and unnamed tools share
    // the slice of the deepest group they fall in, or the unscoped policies.
    for (const tool of analyzed.tools) {
      this.toolPlans.set(tool, { slice: preparseSlice(all.filter((p) => matchesTool(p, tool))), parents: parentsOf(tool) })
    }
    for (const g of this.groups) {
      const slice = preparseSlice(all.filter((p) => p.scope.kind === 'all' || p.scope.groups.some((h) => h === g || inActionGroup(g, h))))
      this.groupPlans.set(g, { slice, parents: null })
    }
    this.defaultPlan = { slice: preparseSlice(all.filter((p) => p.scope.kind === 'all')), parents: null }
  }

  private planFor(tool: string): ActionPlan {
    const known = this.toolPlans.get(tool)
    if (known) return known
    if (this.groups.length === 0) return this.defaultPlan
    const cached = this.unknownPlans.get(tool)
    if (cached) return cached
    const deepest = this.groups.find((g) => inActionGroup(tool, g))
    const plan: ActionPlan = deepest
      ? { slice: this.groupPlans.get(deepest)!.slice, parents: this.groups.filter((g) => inActionGroup(tool, g)) }
      : this.defaultPlan
    // Tool names come from callers: bound the memo, never the correctness.
    if (this.unknownPlans.size >= PLAN_CACHE_MAX) this.unknownPlans.clear()
    this.unknownPlans.set(tool, plan)
    return plan
  }

  /** Number of policies the call for `tool` is evaluated against (for tests and metrics). */
  sliceSize(tool: string): number {
    return this.whole ? this.whole.size : this.planFor(tool).slice.size
  }

  evaluate(request: PolicyRequest): PolicyResult {
    if (!this.cache) return this.evaluateUncached(request)
    const key = this.cacheKey(request)
    if (key === null) return this.evaluateUncached(request)
    let hit = this.cache.get(key)
    if (!hit) {
      hit = this.evaluateUncached(request)
      this.cache.set(key, hit)
    }
    return copyResult(hit)
  }

  /**
   * Everything the decision depends on: the principal as the token states
   * it, the tool, the target, the parameters as JSON text (the text they
   * were parsed from when the caller has it, else their canonical RFC 8785
   * form), the override flag, and time or client address only when the
   * bundle reads them. null when the parameters have no canonical form (not
   * cached). Any JSON text parses to exactly one value, so two keys are equal
   * only for equal parameters, whichever way each text was obtained.
   */
  private cacheKey(r: PolicyRequest): string | null {
    const p = r.principal
    let params: string
    if (r.paramsText !== undefined) {
      params = r.paramsText
    } else {
      try {
        params = canonicalJson(r.params)
      } catch {
        return null
      }
    }
    if (params.length > MAX_CACHED_PARAMS) return null
    // JSON of the tuple (self-delimiting), then the params' text: injective,
    // so two different calls can never share a key.
    return (
      JSON.stringify([
        p.tenant,
        p.agentId,
        p.clientId,
        p.scopes,
        p.capabilities,
        r.action,
        r.resource,
        r.override === true,
        this.readsTime ? r.time : null,
        this.readsAddress ? r.clientAddress : null,
        r.http ?? null,
        // What policy sees of a chain (depth follows from chain and user); never the gateway's own bookkeeping beside it.
        r.delegation ? [r.delegation.chain, r.delegation.depth, r.delegation.user, r.delegation.userIssuer, r.delegation.userResources] : null,
      ]) + params
    )
  }

  private evaluateUncached(request: PolicyRequest): PolicyResult {
    try {
      if (typeof request.action !== 'string' || request.action === '') return this.deny(['invalid_request: no action'], [])
      const plan = this.planFor(request.action)
      const slice = this.whole ?? plan.slice
      if (slice.psetId === null) return this.deny([`no_permit: no policy permits ${request.action}`], [])
      const context = buildContext(request, slice.delegationShape)
      const entities = buildEntities(request, plan.parents, this.shape)
      const answer = this.authorize(request, slice.psetId, context, entities)
      if (answer.type === 'failure') {
        return this.deny([`error: the request could not be evaluated (${answer.errors.map((e) => e.message).join('; ')})`], [])
      }
      const result = this.decide(request, toBundleIds(slice, answer.response))
      if (result.decision !== 'approval_needed') return result
      return this.checkApprovable(request, slice, { ...context, override: true }, entities, result)
    } catch (err) {
      if (err instanceof ParamsError) return this.deny([`invalid_params: ${err.message}`], [])
      return this.deny([`error: evaluation failed (${err instanceof Error ? err.message : String(err)})`], [])
    }
  }

  private authorize(request: PolicyRequest, psetId: string, context: Context, entities: EntityJson[]): AuthorizationAnswer {
    return cedar.statefulIsAuthorized({
      principal: { type: PRINCIPAL_TYPE, id: request.principal.agentId },
      action: { type: 'Action', id: request.action },
      resource: { type: RESOURCE_TYPE, id: request.resource ?? '' },
      context,
      entities,
      preparsedPolicySetId: psetId,
    })
  }

  /**
   * An approval is only worth asking for when it would let the call through:
   * the same call with an approved override, judged by every policy but the
   * approval forbids, must be permitted. Otherwise the answer is deny now,
   * instead of an approver's time spent on a call that fails anyway.
   */
  private checkApprovable(request: PolicyRequest, slice: Slice, context: Context, entities: EntityJson[], approval: PolicyResult): PolicyResult {
    const rest = slice.withoutApproval
    const answer = rest && rest.psetId !== null ? this.authorize(request, rest.psetId, context, entities) : null
    const after = answer && answer.type === 'success' ? this.decide({ ...request, override: true }, toBundleIds(rest!, answer.response)) : null
    if (after && (after.decision === 'allow' || after.decision === 'sanitize')) {
      return { ...approval, approved: after }
    }
    const why = after ? after.reasons : ['no_permit: no policy permits it']
    const denied = this.deny([...approval.reasons.map((r) => `${r}, but even approved the call is denied:`), ...why], after?.policyIds ?? [], approval.risk)
    if (approval.actionClass !== undefined) denied.actionClass = approval.actionClass
    return denied
  }

  private byOrder = (a: string, b: string): number => (this.order.get(a) ?? 0) - (this.order.get(b) ?? 0)

  private label(m: PolicyMeta): string {
    return m.reason ? `${m.id} (${m.reason})` : m.id
  }

  /** Cedar's answer + the determining policies' annotations → one of the four decisions. */
  private decide(request: PolicyRequest, response: Response): PolicyResult {
    const determining = [...response.diagnostics.reason].sort(this.byOrder)
    const metas = determining.map((id) => this.meta.get(id)).filter((m): m is PolicyMeta => m !== undefined)
    const risk: 'high' | 'normal' = metas.some((m) => m.risk === 'high') ? 'high' : 'normal'
    // Write wins: one determining policy calling the action a write is enough to refuse it as a read in a Redis outage.
    const actionClass = metas.some((m) => m.actionClass === 'write') ? 'write' : metas.some((m) => m.actionClass === 'read') ? 'read' : undefined
    const errors = response.diagnostics.errors
    const result = this.decideFrom(request, response.decision, determining, metas, risk, errors)
    if (actionClass !== undefined) result.actionClass = actionClass
    return result
  }

  private decideFrom(
    request: PolicyRequest,
    cedarDecision: Response['decision'],
    determining: string[],
    metas: PolicyMeta[],
    risk: 'high' | 'normal',
    errors: Response['diagnostics']['errors'],
  ): PolicyResult {
    // Cedar skips a policy whose evaluation errors; for a forbid that would
    // fail open (a missing or mistyped parameter lifting a restriction), so
    // an erroring forbid denies.
    const erroredForbids = errors.filter((e) => this.meta.get(e.policyId)?.effect === 'forbid')
    if (erroredForbids.length > 0) {
      const ids = [...new Set([...erroredForbids.map((e) => e.policyId), ...determining.filter((id) => this.meta.get(id)?.effect === 'forbid')])].sort(
        this.byOrder,
      )
      const reasons = erroredForbids.map((e) => `error: forbid ${e.policyId} could not be evaluated, so it denies (${e.error.message})`)
      return this.deny(reasons, ids, risk)
    }

    if (cedarDecision === 'deny') {
      if (metas.length === 0) {
        const reasons = [`no_permit: no policy permits ${request.action}`]
        for (const e of errors) reasons.push(`error: permit ${e.policyId} could not be evaluated (${e.error.message})`)
        return this.deny(reasons, [], risk)
      }
      const hard = metas.filter((m) => m.approval === null)
      if (hard.length > 0)
        return this.deny(
          hard.map((m) => `forbid: ${this.label(m)}`),
          determining,
          risk,
        )
      const first = metas[0]!
      return {
        decision: 'approval_needed',
        reasons: metas.map((m) => `approval: ${this.label(m)} needs approval by ${m.approval}`),
        policyIds: determining,
        obligations: [],
        approvalGroup: first.approval!,
        requireConsole: metas.some((m) => m.requireConsole),
        risk,
        policyVersion: this.version,
        mode: this.mode,
      }
    }

    const obligations: Obligation[] = []
    const seen = new Set<string>()
    for (const m of metas) {
      for (const path of m.redact) {
        if (seen.has(path)) continue
        seen.add(path)
        obligations.push({ type: 'redact', path })
      }
    }
    return {
      decision: obligations.length > 0 ? 'sanitize' : 'allow',
      reasons: metas.map((m) => (m.redact.length > 0 ? `sanitize: ${this.label(m)} redacts ${m.redact.join(', ')}` : `permit: ${this.label(m)}`)),
      policyIds: determining,
      obligations,
      risk,
      policyVersion: this.version,
      mode: this.mode,
    }
  }

  private deny(reasons: string[], policyIds: string[], risk: 'high' | 'normal' = 'normal'): PolicyResult {
    return { decision: 'deny', reasons, policyIds, obligations: [], risk, policyVersion: this.version, mode: this.mode }
  }
}

/** A copy, so a caller that edits its result cannot poison the cache. */
function copyResult(r: PolicyResult): PolicyResult {
  const copy: PolicyResult = { ...r, reasons: [...r.reasons], policyIds: [...r.policyIds], obligations: r.obligations.map((o) => ({ ...o })) }
  if (r.approved !== undefined) copy.approved = copyResult(r.approved)
  return copy
}

/**
 * Compiles bundles into engines (PolicyCompiler). Throws CedarSyntaxError
 * (`invalid_request`, line and column) for bad policy text; the engine it
 * returns is complete, so a caller that swaps engines never exposes a
 * half-loaded bundle.
 */
export class CedarCompiler implements PolicyCompiler {
  constructor(private readonly opts: CedarEngineOptions = {}) {}

  compile(bundle: PolicyBundleSource): CedarEngine {
    return new CedarEngine(bundle, analyzeBundle(bundle.cedar, undefined, { validate: this.opts.validate ?? false }), this.opts)
  }
}

/**
 * Validates policy text against the Aegis schema without compiling it (the
 * control plane's upload check). Throws CedarSyntaxError with line and column.
 */
export function validatePolicyText(text: string, source?: string): { policies: number; tools: string[]; groups: string[] } {
  const a = analyzeBundle(text, source)
  return { policies: a.policies.length, tools: a.tools, groups: a.groups }
}
