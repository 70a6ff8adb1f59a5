/**
 * `redact:/result/…` obligations on the results of `resources/read` and
 * `prompts/get` (docs/mcp.md "Result redaction"): as for a tool result, the
 * pointer addresses the JSON a text item carries, and anything it cannot
 * address (text that is not a JSON object or array, a blob, an image, an
 * embedded resource) is withheld, never passed on unchecked.
 */
import { applyObligations } from '../../../policy/sanitize.js'
import type { Obligation } from '../../../policy/types.js'
import { isPlainObject } from '../common.js'
import { WITHHELD } from './result-redaction.js'

const RESULT_PREFIX = '/result/'

/** The redacted JSON text of `text`, or null when it is not a JSON object or array. */
function redactJsonText(text: string, obligations: readonly Obligation[]): string | null {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return null
  }
  if (parsed === null || typeof parsed !== 'object') return null
  // The pipeline's redactor works on `/params/…` pointers: re-root ours there.
  const mapped: Obligation[] = obligations.map((o) => ({ type: 'redact', path: `/params/${o.path.slice(RESULT_PREFIX.length)}` }))
  const out = applyObligations({ params: parsed as Record<string, unknown> }, mapped).params
  return out === parsed ? text : JSON.stringify(out)
}

/** Applies result redactions to a `resources/read` result (`contents[]`: `text` or `blob` items). Never mutates its input. */
export function redactResourceResult(result: unknown, obligations: readonly Obligation[]): unknown {
  if (obligations.length === 0 || !isPlainObject(result) || !Array.isArray(result.contents)) return result
  return {
    ...result,
    contents: result.contents.map((item: unknown) => {
      const uri = isPlainObject(item) && typeof item.uri === 'string' ? item.uri : ''
      if (isPlainObject(item) && typeof item.text === 'string' && !('blob' in item)) {
        const text = redactJsonText(item.text, obligations)
        if (text !== null) return text === item.text ? item : { ...item, text }
      }
      return { uri, mimeType: 'text/plain', text: WITHHELD }
    }),
  }
}

/** Applies result redactions to a `prompts/get` result (`messages[].content`). Never mutates its input. */
export function redactPromptResult(result: unknown, obligations: readonly Obligation[]): unknown {
  if (obligations.length === 0 || !isPlainObject(result) || !Array.isArray(result.messages)) return result
  return {
    ...result,
    messages: result.messages.map((m: unknown) => {
      if (!isPlainObject(m)) return { role: 'user', content: { type: 'text', text: WITHHELD } }
      const c = m.content
      if (isPlainObject(c) && c.type === 'text' && typeof c.text === 'string') {
        const text = redactJsonText(c.text, obligations)
        if (text !== null) return text === c.text ? m : { ...m, content: { ...c, text } }
      }
      return { ...m, content: { type: 'text', text: WITHHELD } }
    }),
  }
}
