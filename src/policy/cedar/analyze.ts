/**
 * Parses and validates a bundle's Cedar text once: syntax, the Aegis
 * annotations, and the published schema. Every problem is reported with the
 * line and column it sits at, so `aegis policy validate` and the admin API can
 * point at it.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import type { DetailedError, PolicyJson } from '@cedar-policy/cedar-wasm/nodejs'
import { InvalidRequest } from '../../errors.js'
import { bundleSchemaText, isActionGroup } from './schema.js'

/** Problems reported for one bundle at most (each costs a position lookup). */
const MAX_REPORTED = 20

/** Bundles larger than this are refused before parsing. */
export const MAX_POLICIES = 5000
export const MAX_POLICY_TEXT_BYTES = 2 * 1024 * 1024

/** One problem in a bundle's text; line and column count from 1 (column in characters). */
export interface CedarProblem {
  line: number
  column: number
  message: string
}

/** Bad Cedar text: an `invalid_request` whose message names line and column of each problem. */
export class CedarSyntaxError extends InvalidRequest {
  readonly problems: CedarProblem[]
  constructor(problems: CedarProblem[], source?: string) {
    const shown = problems.slice(0, 5).map((p) => `${source ? `${source}:` : ''}line ${p.line}, column ${p.column}: ${p.message}`)
    if (problems.length > 5) shown.push(`(${problems.length - 5} more)`)
    super(`invalid Cedar policy: ${shown.join('; ')}`)
    this.problems = problems
  }
}

/** The Aegis meaning of one policy's annotations. */
export interface PolicyMeta {
  /** `@id("…")` when present, else Cedar's `policy<N>` (N = position in the text from 0). */
  id: string
  effect: 'permit' | 'forbid'
  /** `@approval("group")` on a forbid. */
  approval: string | null
  /** `@approval_via("console")`. */
  requireConsole: boolean
  /** `@risk("high")`. */
  risk: 'high' | 'normal'
  /** JSON pointers from `@sanitize("redact:/params/x, redact:/params/y")` (and `@sanitize_<name>`). */
  redact: string[]
  /** `@reason("…")`: human text added to the decision's reason. */
  reason: string | null
  /** `@action_class("read"|"write")`: overrides the tool-name read classification (Redis outage); absent when not annotated. */
  actionClass?: 'read' | 'write'
}

/** How a policy's scope constrains the action, for slicing. */
export type ActionScope = { kind: 'all' } | { kind: 'some'; tools: string[]; groups: string[] }

export interface AnalyzedPolicy {
  meta: PolicyMeta
  /** The policy's own text (annotations included). */
  text: string
  /** Position in the bundle text, from 0. */
  index: number
  line: number
  scope: ActionScope
  /** Every action and group the policy names, sorted. */
  named: string[]
  /** UTF-8 byte offset of the policy in the bundle text. */
  byteOffset: number
}

export interface AnalyzedBundle {
  policies: AnalyzedPolicy[]
  /** Every tool the policies name (scopes and conditions). */
  tools: string[]
  /** Every action group (`payments.*`) the policies name. */
  groups: string[]
}

/** Line and column (from 1) of a UTF-8 byte offset, as Cedar reports spans. */
export function positionOf(text: string, byteOffset: number): { line: number; column: number } {
  const prefix = Buffer.from(text, 'utf8').subarray(0, Math.max(0, byteOffset)).toString('utf8')
  const lines = prefix.split('\n')
  return { line: lines.length, column: [...(lines[lines.length - 1] ?? '')].length + 1 }
}

function problemsOf(text: string, errors: DetailedError[], baseOffset = 0): CedarProblem[] {
  return errors.slice(0, MAX_REPORTED).map((e) => {
    const loc = e.sourceLocations?.[0]
    const pos = loc ? positionOf(text, baseOffset + loc.start) : { line: 1, column: 1 }
    // Batched validation renumbers policies, so Cedar's `policyN` names would mislead: the position says which.
    const detail = [e.message.replace(/^failed to parse policies from string: /, ''), loc?.label, e.help]
      .filter(Boolean)
      .join(' — ')
      .replace(/for policy `[^`]*`, /g, '')
    return { ...pos, message: detail }
  })
}

const SANITIZE_KEY = /^sanitize(?:_[A-Za-z0-9_]+|\d+)?$/
const GROUP_NAME = /^[A-Za-z0-9._:@-]{1,64}$/

/**
 * Checks an RFC 6901 pointer rooted at the request and under `/params`, or
 * under `/result` (the tool's result, redacted by MCP mode before the agent sees it).
 */
function checkRedactPointer(pointer: string): string | null {
  if (pointer.startsWith('/result/') && pointer.length > 8) return /~(?![01])/.test(pointer) ? 'a JSON pointer escapes ~ as ~0 and / as ~1 (RFC 6901)' : null
  if (!(pointer === '/params' || pointer.startsWith('/params/'))) return 'a redact pointer must start with /params/ (or /result/ for MCP tool results)'
  if (pointer === '/params') return 'redacting all of /params is not supported; name the fields'
  if (/~(?![01])/.test(pointer)) return 'a JSON pointer escapes ~ as ~0 and / as ~1 (RFC 6901)'
  return null
}

function readMeta(json: PolicyJson, cedarId: string): { meta: PolicyMeta; problems: string[] } {
  const a = json.annotations ?? {}
  const problems: string[] = []
  const effect = json.effect
  const id = a.id !== undefined ? a.id : cedarId
  if (a.id !== undefined && (a.id.length === 0 || a.id.length > 128)) problems.push('@id must be 1 to 128 characters')
  let approval: string | null = null
  if (a.approval !== undefined) {
    if (effect !== 'forbid') problems.push('@approval applies to forbid policies only')
    else if (!GROUP_NAME.test(a.approval)) problems.push('@approval("group") needs an approver group name of 1 to 64 letters, digits or ._:@-')
    else approval = a.approval
  }
  let requireConsole = false
  if (a.approval_via !== undefined) {
    if (a.approval_via !== 'console') problems.push('@approval_via accepts only "console"')
    else if (a.approval === undefined) problems.push('@approval_via needs @approval on the same policy')
    else requireConsole = true
  }
  let risk: 'high' | 'normal' = 'normal'
  if (a.risk !== undefined) {
    if (a.risk !== 'high' && a.risk !== 'normal') problems.push('@risk accepts "high" or "normal"')
    else risk = a.risk
  }
  let actionClass: 'read' | 'write' | undefined
  if (a.action_class !== undefined) {
    if (a.action_class !== 'read' && a.action_class !== 'write') problems.push('@action_class accepts "read" or "write"')
    else actionClass = a.action_class
  }
  const redact: string[] = []
  for (const [key, value] of Object.entries(a)) {
    if (!SANITIZE_KEY.test(key)) continue
    if (effect !== 'permit') {
      problems.push(`@${key} applies to permit policies only`)
      continue
    }
    // Directives are comma separated; split only before a `word:` so a comma inside a pointer survives.
    for (const directive of value.split(/\s*,\s*(?=[a-z]+:)/)) {
      const m = /^\s*([a-z]+):(.*?)\s*$/.exec(directive)
      if (!m) {
        problems.push(`@${key}: "${directive}" is not a directive (expected redact:/params/…)`)
        continue
      }
      if (m[1] !== 'redact') {
        problems.push(`@${key}: unknown directive "${m[1]}" (supported: redact)`)
        continue
      }
      const bad = checkRedactPointer(m[2]!)
      if (bad) problems.push(`@${key}: ${bad}`)
      else if (!redact.includes(m[2]!)) redact.push(m[2]!)
    }
  }
  return {
    meta: { id, effect, approval, requireConsole, risk, redact, reason: a.reason ?? null, ...(actionClass !== undefined ? { actionClass } : {}) },
    problems,
  }
}

function scopeOf(json: PolicyJson): ActionScope {
  const c = json.action
  if (c.op === 'All') return { kind: 'all' }
  const uids = c.op === '==' ? ('entity' in c ? [c.entity] : []) : 'entity' in c ? [c.entity] : c.entities
  const ids = uids.map((u) => ('__entity' in u ? u.__entity.id : u.id))
  return { kind: 'some', tools: ids.filter((i) => !isActionGroup(i)), groups: ids.filter(isActionGroup) }
}

/** Every `Action::"…"` literal anywhere in a policy's JSON (scope and conditions). */
function collectActions(node: unknown, out: Set<string>): void {
  if (Array.isArray(node)) {
    for (const n of node) collectActions(n, out)
    return
  }
  if (node === null || typeof node !== 'object') return
  const o = node as Record<string, unknown>
  const uid = (o.__entity ?? o) as Record<string, unknown>
  if (uid.type === 'Action' && typeof uid.id === 'string') out.add(uid.id)
  for (const v of Object.values(o)) collectActions(v, out)
}

/** Extra validator strictness Aegis waives; see `isWaived`. */
const ATTR_NOT_FOUND = /attribute `(?:params|http\.query)(\.[^`]*)?` in context for .* not found/
const EXT_NON_LITERAL = /extension constructors may not be called with non-literal expressions/

/**
 * Tool parameters are open-ended JSON, and Cedar's strict validator has no
 * open record type (additionalAttributes is experimental), so the schema
 * declares `params` (and a proxied request's `http.query`) as an empty
 * record and exactly two errors are waived: reading an attribute of
 * `context.params` or `context.http.query`, and calling an extension
 * constructor (`ip(…)`, `decimal(…)`) on such an attribute. Everything else
 * (entity types, principal and resource attributes, context keys, types of
 * non-params expressions, action applicability) is validated strictly; a
 * params value of the wrong type fails evaluation, which Aegis turns into deny.
 */
function isWaived(buf: Buffer, e: DetailedError): boolean {
  const loc = e.sourceLocations?.[0]
  if (!loc) return false
  const span = buf.subarray(loc.start, loc.end).toString('utf8')
  if (ATTR_NOT_FOUND.test(e.message)) return /^context\s*\.\s*(?:params\b|http\s*\.\s*query\b)/.test(span)
  if (EXT_NON_LITERAL.test(e.message)) return /^[A-Za-z]+\s*\(\s*context\s*\.\s*(?:params|client_address)\b/.test(span)
  return false
}

/** Most actions declared in one validation call; see validateAgainstSchema. */
const ACTIONS_PER_VALIDATION = 24

/**
 * Strict validation against the bundle's schema. The validator's cost grows
 * with policies × declared actions (a 500-policy, 300-tool bundle takes
 * about a second in one call), while a policy's typing depends only on the
 * actions it names (an unscoped one is typed like the placeholder tool). So
 * policies are validated in batches, each with a schema declaring only the
 * actions its policies name, and error positions are mapped back to the
 * bundle text.
 */
function validateAgainstSchema(text: string, policies: AnalyzedPolicy[], source?: string): void {
  const byKey = new Map<string, AnalyzedPolicy[]>()
  for (const p of policies) {
    const key = p.named.join('\u0000')
    const list = byKey.get(key) ?? []
    list.push(p)
    byKey.set(key, list)
  }
  const batches: Array<{ actions: Set<string>; policies: AnalyzedPolicy[] }> = []
  let cur: { actions: Set<string>; policies: AnalyzedPolicy[] } | null = null
  for (const key of [...byKey.keys()].sort()) {
    const members = byKey.get(key)!
    const names = members[0]!.named
    if (!cur || (cur.actions.size > 0 && new Set([...cur.actions, ...names]).size > ACTIONS_PER_VALIDATION)) {
      cur = { actions: new Set(), policies: [] }
      batches.push(cur)
    }
    for (const n of names) cur.actions.add(n)
    cur.policies.push(...members)
  }
  const problems: CedarProblem[] = []
  for (const batch of batches) {
    const ordered = [...batch.policies].sort((a, b) => a.index - b.index)
    // Where each policy starts in the batch text (bytes), to map spans back.
    const starts: number[] = []
    let at = 0
    for (const p of ordered) {
      starts.push(at)
      at += Buffer.byteLength(p.text, 'utf8') + 1
    }
    const batchText = ordered.map((p) => p.text).join('\n')
    const actions = [...batch.actions]
    const schema = bundleSchemaText(
      actions.filter((a) => !isActionGroup(a)),
      actions.filter(isActionGroup),
    )
    const v = cedar.validate({ schema, policies: { staticPolicies: batchText }, validationSettings: { mode: 'strict' } })
    const batchBytes = Buffer.from(batchText, 'utf8')
    if (v.type === 'failure') {
      // The generated schema itself failed: a tool name Cedar cannot declare.
      problems.push(...v.errors.map((e) => ({ ...positionOf(text, ordered[0]!.byteOffset), message: e.message })))
      continue
    }
    for (const ve of v.validationErrors) {
      const loc = ve.error.sourceLocations?.[0]
      let k = 0
      if (loc) while (k + 1 < starts.length && starts[k + 1]! <= loc.start) k++
      const base = ordered[k]!.byteOffset - starts[k]!
      if (isWaived(batchBytes, ve.error)) continue
      if (problems.length < MAX_REPORTED) problems.push(...problemsOf(text, [ve.error], base))
    }
  }
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line || a.column - b.column)
    throw new CedarSyntaxError(problems, source)
  }
}

/**
 * Parses, reads annotations and validates a bundle against the Aegis schema.
 * Pure: nothing is cached in the Cedar runtime. Throws CedarSyntaxError
 * (`invalid_request`, with line and column) for any problem.
 */
export function analyzeBundle(text: string, source?: string, opts: { validate?: boolean } = {}): AnalyzedBundle {
  if (typeof text !== 'string' || text.trim() === '') throw new CedarSyntaxError([{ line: 1, column: 1, message: 'the bundle has no policies' }], source)
  if (Buffer.byteLength(text, 'utf8') > MAX_POLICY_TEXT_BYTES)
    throw new CedarSyntaxError([{ line: 1, column: 1, message: `policy text over ${MAX_POLICY_TEXT_BYTES} bytes` }], source)
  const parsed = cedar.checkParsePolicySet({ staticPolicies: text })
  if (parsed.type === 'failure') throw new CedarSyntaxError(problemsOf(text, parsed.errors), source)
  const parts = cedar.policySetTextToParts(text)
  if (parts.type === 'failure') throw new CedarSyntaxError(problemsOf(text, parts.errors), source)
  if (parts.policy_templates.length > 0)
    throw new CedarSyntaxError([{ line: 1, column: 1, message: 'policy templates (?principal / ?resource slots) are not supported in bundles' }], source)
  const n = parts.policies.length
  if (n === 0) throw new CedarSyntaxError([{ line: 1, column: 1, message: 'the bundle has no policies' }], source)
  if (n > MAX_POLICIES) throw new CedarSyntaxError([{ line: 1, column: 1, message: `more than ${MAX_POLICIES} policies` }], source)

  // policySetTextToParts returns the parts sorted by their ids (policy0,
  // policy1, policy10, …) as strings; undo that to get source order.
  const sortedIds = Array.from({ length: n }, (_, i) => `policy${i}`).sort()
  const ordered: string[] = new Array<string>(n)
  parts.policies.forEach((p, i) => {
    ordered[Number(sortedIds[i]!.slice(6))] = p
  })

  const problems: CedarProblem[] = []
  const policies: AnalyzedPolicy[] = []
  const tools = new Set<string>()
  const groups = new Set<string>()
  const seen = new Map<string, number>()
  let cursor = 0
  // Positions are tracked incrementally: recomputing them from the start of
  // the text for each policy would be quadratic in the bundle size.
  let walked = 0
  let walkedBytes = 0
  let line = 1
  let lineStart = 0
  for (let i = 0; i < n; i++) {
    const ptext = ordered[i]!
    const at = text.indexOf(ptext, cursor)
    const charOffset = at >= 0 ? at : cursor
    if (at >= 0) cursor = at + ptext.length
    for (let j = walked; j < charOffset; j++) {
      if (text.charCodeAt(j) === 10) {
        line++
        lineStart = j + 1
      }
    }
    walkedBytes += Buffer.byteLength(text.slice(walked, charOffset), 'utf8')
    walked = charOffset
    const pos = { line, column: [...text.slice(lineStart, charOffset)].length + 1 }
    const byteOffset = walkedBytes
    const json = cedar.policyToJson(ptext)
    if (json.type === 'failure') {
      problems.push(...problemsOf(ptext, json.errors).map((p) => ({ ...p, line: p.line + pos.line - 1 })))
      continue
    }
    const { meta, problems: annProblems } = readMeta(json.json, `policy${i}`)
    for (const m of annProblems) problems.push({ ...pos, message: m })
    const prev = seen.get(meta.id)
    if (prev !== undefined) problems.push({ ...pos, message: `policy id "${meta.id}" is already used by the policy on line ${prev}` })
    seen.set(meta.id, pos.line)
    const scope = scopeOf(json.json)
    const named = new Set<string>()
    collectActions(json.json, named)
    for (const a of named) (isActionGroup(a) ? groups : tools).add(a)
    policies.push({ meta, text: ptext, index: i, line: pos.line, scope, named: [...named].sort(), byteOffset })
  }
  if (problems.length > 0) throw new CedarSyntaxError(problems, source)

  if (opts.validate !== false) validateAgainstSchema(text, policies, source)
  return { policies, tools: [...tools], groups: [...groups] }
}
