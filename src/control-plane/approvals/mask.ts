/**
 * What approvers see of a call's parameters in chat and webhook messages:
 * fields a policy sanitizes (redact obligations, RFC 6901 pointers rooted at
 * the request) and fields whose names look like secrets are masked, long
 * values are shortened. The approval itself still binds the full parameters
 * by hash.
 */
import { resolvePointer } from './budgets.js'

/** The mask shown instead of a sanitized value. */
export const MASK = '••••••'

/** Names of fields that are masked whatever the policy says. */
const SENSITIVE = new RegExp(
  `(${[
    'pass(word|phrase)?',
    'secret',
    'token',
    'api[_-]?key',
    'private[_-]?key',
    'card[_-]?(number|no)',
    '^pan$',
    'cvv',
    'cvc',
    'ssn',
    'social[_-]?security',
    'iban',
    'account[_-]?number',
    'routing[_-]?number',
    '^pin$',
  ].join('|')})`,
  'i',
)

/** A deep copy of `params` with `maskPaths` (`/params/…`) and secret-looking fields replaced by {@link MASK}. */
export function maskParams(params: Record<string, unknown>, maskPaths: readonly string[] = []): Record<string, unknown> {
  const copy = structuredClone(params)
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk)
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>
      for (const k of Object.keys(o)) o[k] = SENSITIVE.test(k) ? MASK : walk(o[k])
      return o
    }
    return v
  }
  walk(copy)
  const root = { params: copy }
  for (const p of maskPaths) {
    if (!p.startsWith('/params/')) continue
    const parentPath = p.slice(0, p.lastIndexOf('/'))
    const key = p
      .slice(p.lastIndexOf('/') + 1)
      .replace(/~1/g, '/')
      .replace(/~0/g, '~')
    const parent = resolvePointer(root, parentPath)
    if (parent !== null && typeof parent === 'object' && Object.hasOwn(parent, key)) {
      ;(parent as Record<string, unknown>)[key] = MASK
    }
  }
  return copy
}

/** Flattened `[path, display value]` pairs for messages, at most `limit`, each value at most `maxLen` chars. */
export function paramFields(params: Record<string, unknown>, limit = 10, maxLen = 200): { fields: Array<[string, string]>; omitted: number } {
  const out: Array<[string, string]> = []
  let total = 0
  const visit = (v: unknown, path: string, depth: number) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && depth < 3 && Object.keys(v).length > 0) {
      for (const [k, child] of Object.entries(v as Record<string, unknown>)) visit(child, path ? `${path}.${k}` : k, depth + 1)
      return
    }
    total++
    if (out.length >= limit) return
    let text = typeof v === 'string' ? v : JSON.stringify(v)
    if (text.length > maxLen) text = `${text.slice(0, maxLen - 1)}…`
    out.push([path || '(params)', text])
  }
  visit(params, '', 0)
  return { fields: out, omitted: total - out.length }
}
