import type { FeedSnapshot, PolicyState } from '../../feed/types.js'
import type { ControlPlaneDeps } from '../deps.js'

/**
 * The full feed state a (re)connecting gateway loads first: live
 * revocations, every agent's current capability hash, every tenant's active
 * and candidate policy bundle. `seq` is read before the entries, so every
 * entry up to it is included and later events are deduplicated by seq.
 */
export async function buildFeedSnapshot(deps: ControlPlaneDeps): Promise<FeedSnapshot> {
  const now = deps.clock.now()
  const lastSeq = await deps.store.revocations.lastSeq()
  const [revocations, agents, tenants, active] = await Promise.all([
    deps.store.revocations.listActive(now),
    deps.store.agents.listAll(),
    deps.store.tenants.list(),
    deps.store.policies.listActive(),
  ])
  const policies: PolicyState[] = []
  const activeByTenant = new Map(active.map((b) => [b.tenant, b]))
  for (const t of tenants) {
    const a = activeByTenant.get(t.id)
    // Candidates are rare; only tenants that have bundles at all are listed.
    const bundles = await deps.store.policies.list(t.id)
    const c = bundles.find((b) => b.status === 'candidate')
    if (!a && !c) continue
    policies.push({
      tenant: t.id,
      active: a ? { id: a.id, version: a.version, cedar: a.cedar, mode: a.mode } : null,
      candidate: c ? { id: c.id, version: c.version, cedar: c.cedar } : null,
    })
  }
  const seq = revocations.reduce((m, r) => Math.max(m, r.seq), lastSeq)
  return {
    seq,
    revocations,
    agents: agents.map((a) => ({ tenant: a.tenant, agentId: a.agentId, capabilityHash: a.capabilityHash })),
    policies,
    generatedAt: now,
  }
}
