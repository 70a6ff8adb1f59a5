/**
 * Applies a decision's obligations to the call parameters the gateway answers
 * with or forwards. Hand-written because the obligation semantics (redact,
 * ignore missing paths, copy on write) are ours; the pointer syntax is
 * RFC 6901.
 */
import type { Obligation } from './types.js'

/** What replaces a redacted value. */
export const REDACTED = '[REDACTED]'

/** RFC 6901 §4: splits a pointer into unescaped reference tokens; null if malformed. */
export function parsePointer(pointer: string): string[] | null {
  if (pointer === '') return []
  if (!pointer.startsWith('/')) return null
  const tokens: string[] = []
  for (const raw of pointer.slice(1).split('/')) {
    if (/~(?![01])/.test(raw)) return null
    tokens.push(raw.replace(/~1/g, '/').replace(/~0/g, '~'))
  }
  return tokens
}

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/

/**
 * Returns `node` with the value at `tokens` replaced, copying only the
 * containers on the path (the input is never mutated). A path that does not
 * exist leaves the node as it is. On an array, a token is an index
 * (RFC 6901 §4), and `*` (never a valid index, so no RFC 6901 pointer means
 * it) stands for every element, so one pointer redacts a field of each item.
 */
function redactAt(node: unknown, tokens: string[], i: number): unknown {
  if (i === tokens.length) return REDACTED
  const token = tokens[i]!
  if (Array.isArray(node)) {
    if (token === '*') {
      let changed = false
      const out = node.map((el) => {
        const r = redactAt(el, tokens, i + 1)
        if (r !== el) changed = true
        return r
      })
      return changed ? out : node
    }
    if (!ARRAY_INDEX.test(token)) return node
    const idx = Number(token)
    if (idx >= node.length) return node
    const r = redactAt(node[idx], tokens, i + 1)
    if (r === node[idx]) return node
    const out = node.slice()
    out[idx] = r
    return out
  }
  if (node !== null && typeof node === 'object') {
    const obj = node as Record<string, unknown>
    if (!Object.hasOwn(obj, token)) return node
    const r = redactAt(obj[token], tokens, i + 1)
    if (r === obj[token]) return node
    // defineProperty, not assignment: a `__proto__` key must stay a plain property.
    const out: Record<string, unknown> = { ...obj }
    Object.defineProperty(out, token, { value: r, enumerable: true, writable: true, configurable: true })
    return out
  }
  return node
}

/**
 * Applies `redact` obligations (RFC 6901 pointers rooted at the request, e.g.
 * `/params/card/number`) and returns the sanitized parameters. Pointers
 * outside `/params`, malformed pointers and missing paths change nothing;
 * a value already `[REDACTED]` stays so. The input is never mutated.
 */
export function applyObligations(
  request: { params: Record<string, unknown>; resource?: string | null },
  obligations: readonly Obligation[],
): { params: Record<string, unknown> } {
  let params: unknown = request.params
  for (const o of obligations) {
    if (o.type !== 'redact') continue
    const tokens = parsePointer(o.path)
    if (tokens?.[0] !== 'params' || tokens.length < 2) continue
    params = redactAt(params, tokens, 1)
  }
  return { params: params as Record<string, unknown> }
}
