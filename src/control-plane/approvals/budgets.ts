/**
 * Automatic-approval budgets ("approve up to N per day automatically below X,
 * ask a human above"). Config key `approvals.budgets`, a JSON array of:
 *
 * ```json
 * {"name": "small-transfers", "tenant": "acme", "tool": "payments.transfer",
 *  "group": "finance", "auto_approve_below": {"param": "/params/amount", "max": 1000},
 *  "per_day": 5}
 * ```
 *
 * - `tenant`, `tool`, `group` must equal the request's (`"*"` matches any).
 * - `auto_approve_below.param` is an RFC 6901 JSON pointer rooted at the
 *   request (`/params/…`, as sanitize obligations are); the value there must
 *   be a finite JSON number strictly below `max`. A missing or non-numeric
 *   value never auto-approves.
 * - `per_day`: at most this many automatic approvals under this budget (per
 *   tenant) in any rolling 24 hours; past it a human is asked again.
 * - Requests whose policy requires the console never auto-approve.
 *
 * The first matching budget decides; when it cannot auto-approve the request
 * goes to a human and the answer says why.
 */
/** One validated budget entry. */
export interface ApprovalBudget {
  name: string
  tenant: string
  tool: string
  group: string
  /** RFC 6901 pointer rooted at `{ params }`. */
  param: string
  /** Strict upper bound for automatic approval. */
  max: number
  perDay: number
}

const NAME = /^[A-Za-z0-9._:-]{1,64}$/

/** Validates `approvals.budgets`; throws a config-style Error naming every problem. */
export function parseBudgets(raw: unknown): ApprovalBudget[] {
  if (raw === undefined || raw === null) return []
  if (!Array.isArray(raw)) throw new Error('approvals.budgets must be a JSON array')
  const problems: string[] = []
  const out: ApprovalBudget[] = []
  const names = new Set<string>()
  raw.forEach((b: unknown, i) => {
    const at = `approvals.budgets[${i}]`
    if (b === null || typeof b !== 'object' || Array.isArray(b)) {
      problems.push(`${at} must be an object`)
      return
    }
    const r = b as Record<string, unknown>
    const str = (k: string): string | undefined =>
      typeof r[k] === 'string' && (r[k] as string).length > 0 && (r[k] as string).length <= 200 ? (r[k] as string) : undefined
    const name = str('name')
    if (!name || !NAME.test(name)) problems.push(`${at}.name must match ${NAME}`)
    else if (names.has(name)) problems.push(`${at}.name "${name}" is used twice`)
    else names.add(name)
    const tenant = str('tenant')
    const tool = str('tool')
    const group = str('group')
    if (!tenant) problems.push(`${at}.tenant must be a tenant id or "*"`)
    if (!tool) problems.push(`${at}.tool must be a tool name or "*"`)
    if (!group) problems.push(`${at}.group must be an approver group or "*"`)
    const below = r.auto_approve_below as Record<string, unknown> | undefined
    const param = below && typeof below.param === 'string' ? below.param : undefined
    const max = below && typeof below.max === 'number' && Number.isFinite(below.max) ? below.max : undefined
    if (!param?.startsWith('/params/')) problems.push(`${at}.auto_approve_below.param must be a JSON pointer under /params/`)
    if (max === undefined) problems.push(`${at}.auto_approve_below.max must be a finite number`)
    const perDay = r.per_day
    if (typeof perDay !== 'number' || !Number.isInteger(perDay) || perDay < 1 || perDay > 100000)
      problems.push(`${at}.per_day must be an integer from 1 to 100000`)
    for (const k of Object.keys(r)) {
      if (!['name', 'tenant', 'tool', 'group', 'auto_approve_below', 'per_day'].includes(k)) problems.push(`${at}: unknown key "${k}"`)
    }
    if (name && tenant && tool && group && param && max !== undefined && typeof perDay === 'number') {
      out.push({ name, tenant, tool, group, param, max, perDay })
    }
  })
  if (problems.length > 0) throw new Error(`invalid approval budgets:\n  ${problems.join('\n  ')}`)
  return out
}

/** RFC 6901 pointer lookup; undefined when any step is missing. */
export function resolvePointer(root: unknown, pointer: string): unknown {
  if (pointer === '') return root
  if (!pointer.startsWith('/')) return undefined
  let cur: unknown = root
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    if (cur === null || typeof cur !== 'object') return undefined
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9][0-9]*)$/.test(key)) return undefined
      cur = cur[Number(key)]
    } else {
      if (!Object.hasOwn(cur, key)) return undefined
      cur = (cur as Record<string, unknown>)[key]
    }
  }
  return cur
}

/** The first budget that applies to this request (tenant, tool, group), or null. */
export function matchBudget(budgets: readonly ApprovalBudget[], req: { tenant: string; tool: string; group: string }): ApprovalBudget | null {
  const eq = (pattern: string, v: string) => pattern === '*' || pattern === v
  return budgets.find((b) => eq(b.tenant, req.tenant) && eq(b.tool, req.tool) && eq(b.group, req.group)) ?? null
}

/** Whether the request's value is below the budget's bound; the reason when not. */
export function belowBound(b: ApprovalBudget, params: Record<string, unknown>): { ok: true; value: number } | { ok: false; why: string } {
  const v = resolvePointer({ params }, b.param)
  if (typeof v !== 'number' || !Number.isFinite(v)) return { ok: false, why: `${b.param} is not a number, so budget "${b.name}" does not apply` }
  if (!(v < b.max)) return { ok: false, why: `${b.param} = ${v} is not below ${b.max} (budget "${b.name}")` }
  return { ok: true, value: v }
}
