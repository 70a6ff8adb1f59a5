import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import type { Context } from '@cedar-policy/cedar-wasm/nodejs'
import { LRUCache } from 'lru-cache'
import { analyzeBundle, type AnalyzedBundle } from '../../../policy/cedar/analyze.js'
import { buildEntities } from '../../../policy/cedar/request.js'
import { inActionGroup, PRINCIPAL_TYPE, RESOURCE_TYPE } from '../../../policy/cedar/schema.js'
import type { GatewayDeps } from '../../deps.js'
import type { VerifiedManifest } from '../../manifests.js'
import { evaluatePolicy, principalOf } from '../../pipeline/evaluate-policy.js'
import type { TokenView } from '../../pipeline/token-view.js'
import type { TenantPolicy } from '../../state.js'
import { TOOL_NAME } from '../common.js'
import { reservedAction } from './method-actions.js'

const EMPTY_PARAMS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>
/** How long a "forbidden outright" verdict is reused: policies may test `context.time`. */
const VERDICT_TTL_MS = 30_000
const VERDICT_MAX = 10_000

interface Prepared {
  policies: Record<string, string>
  hardForbids: Set<string>
  groups: string[]
}

/**
 * Decides which tools `tools/list` shows an agent (docs/mcp.md "What
 * tools/list hides"). A tool is hidden when
 * 1. its name is not a tool name the gateway accepts (or one of the
 *    `resource:` / `prompt:` actions reserved for resources and prompts), or
 * 2. it is not in the agent's capability manifest, or
 * 3. the tenant's enforced bundle forbids it whatever the parameters: the
 *    call with empty parameters is denied (the pipeline's own
 *    `evaluatePolicy`), and Cedar's partial evaluation with `context.params`
 *    left unknown still answers a definite deny, determined by a forbid
 *    without `@approval` (or by no permit that could ever apply), with no
 *    evaluation error.
 * Anything less certain is shown: a listing is a courtesy to the model, the
 * call itself is decided (and enforced) on every `tools/call`. In shadow
 * mode (gateway or bundle) only rules 1 and 2 hide.
 */
export class ToolVisibility {
  private readonly prepared = new WeakMap<TenantPolicy, Prepared | null>()
  private readonly verdicts = new WeakMap<TenantPolicy, LRUCache<string, boolean>>()

  constructor(private readonly deps: GatewayDeps) {}

  /** The subset of `names` the agent may see; order is kept by the caller. */
  visible(view: TokenView, manifest: VerifiedManifest, names: readonly string[], resource: string, clientAddress: string | null): Set<string> {
    const out = new Set<string>()
    const now = this.deps.clock.now()
    for (const name of names) {
      if (!TOOL_NAME.test(name) || reservedAction(name) || !manifest.capabilitySet.has(name)) continue
      if (!this.forbiddenOutright(view, manifest, name, resource, clientAddress, now)) out.add(name)
    }
    return out
  }

  /** Which of `calls` (an action on a resource: a resource read, a prompt) the agent may see, by the same rules, in order. */
  visibleCalls(
    view: TokenView,
    manifest: VerifiedManifest,
    calls: ReadonlyArray<{ action: string; resource: string }>,
    clientAddress: string | null,
  ): boolean[] {
    const now = this.deps.clock.now()
    return calls.map(
      (c) =>
        TOOL_NAME.test(c.action) && manifest.capabilitySet.has(c.action) && !this.forbiddenOutright(view, manifest, c.action, c.resource, clientAddress, now),
    )
  }

  private forbiddenOutright(view: TokenView, manifest: VerifiedManifest, tool: string, resource: string, clientAddress: string | null, nowMs: number): boolean {
    const ev = evaluatePolicy(this.deps, view, manifest, { tool, params: EMPTY_PARAMS, resource, clientAddress }, Math.floor(nowMs / 1000))
    if (ev.shadow || this.deps.config.gateway.shadow || ev.result.decision !== 'deny') return false
    const tp = ev.tenantPolicy
    if (tp === undefined) return false
    let cache = this.verdicts.get(tp)
    if (cache === undefined) {
      cache = new LRUCache<string, boolean>({ max: VERDICT_MAX, ttl: VERDICT_TTL_MS })
      this.verdicts.set(tp, cache)
    }
    const p = principalOf(view, manifest)
    const key = JSON.stringify([p.agentId, p.clientId, p.scopes, view.capabilityHash, tool, resource, clientAddress])
    const held = cache.get(key)
    if (held !== undefined) return held
    const verdict = this.deniedWhateverParams(tp, view, manifest, tool, resource, clientAddress, Math.floor(nowMs / 1000))
    cache.set(key, verdict)
    return verdict
  }

  private prepare(tp: TenantPolicy): Prepared | null {
    let p = this.prepared.get(tp)
    if (p !== undefined) return p
    try {
      // Already validated when it was activated; only its shape is needed here.
      const a: AnalyzedBundle = analyzeBundle(tp.source, undefined, { validate: false })
      const policies: Record<string, string> = {}
      const hardForbids = new Set<string>()
      for (const pol of a.policies) {
        policies[pol.meta.id] = pol.text
        if (pol.meta.effect === 'forbid' && pol.meta.approval === null) hardForbids.add(pol.meta.id)
      }
      p = { policies, hardForbids, groups: a.groups }
    } catch (err) {
      this.deps.logger.warn({ err, version: tp.version }, 'MCP tools/list: bundle could not be analyzed; no tool hidden by policy')
      p = null
    }
    this.prepared.set(tp, p)
    return p
  }

  private deniedWhateverParams(
    tp: TenantPolicy,
    view: TokenView,
    manifest: VerifiedManifest,
    tool: string,
    resource: string,
    clientAddress: string | null,
    time: number,
  ): boolean {
    const prepared = this.prepare(tp)
    if (prepared === null) return false
    const principal = principalOf(view, manifest)
    const parents = prepared.groups.filter((g) => inActionGroup(tool, g))
    // `unknown("params")` is Cedar's partial-evaluation placeholder: any condition on the parameters stays a residual.
    const context = {
      params: { __extn: { fn: 'unknown', arg: 'params' } },
      time,
      override: false,
      ...(clientAddress ? { client_address: clientAddress } : {}),
    } as unknown as Context
    const answer = cedar.isAuthorizedPartial({
      principal: { type: PRINCIPAL_TYPE, id: principal.agentId },
      action: { type: 'Action', id: tool },
      resource: { type: RESOURCE_TYPE, id: resource },
      context,
      policies: { staticPolicies: prepared.policies },
      entities: buildEntities(
        { principal, action: tool, resource, params: EMPTY_PARAMS, time, clientAddress, override: false },
        parents.length > 0 ? parents : null,
      ),
    })
    if (answer.type !== 'residuals') return false
    const r = answer.response
    if (r.decision !== 'deny' || r.errored.length > 0) return false
    const forbids = r.mustBeDetermining
    return forbids.length === 0 || forbids.some((id) => prepared.hardForbids.has(id))
  }
}
