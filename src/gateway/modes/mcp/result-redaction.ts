import { applyObligations, REDACTED } from '../../../policy/sanitize.js'
import type { Obligation } from '../../../policy/types.js'
import { isPlainObject } from '../common.js'

const RESULT_PREFIX = '/result/'
/** What replaces a content item the gateway cannot redact by pointer. */
export const WITHHELD = `${REDACTED} (content withheld: the gateway applies result redactions only to JSON)`

/** The `redact:/result/…` obligations of a decision (the ones MCP mode applies to the tool result). */
export function resultObligations(obligations: readonly Obligation[]): Obligation[] {
  return obligations.filter((o) => o.type === 'redact' && o.path.startsWith(RESULT_PREFIX))
}

/**
 * Applies `redact:/result/<pointer>` obligations to an MCP `tools/call`
 * result (docs/mcp.md "Result redaction"). `<pointer>` (RFC 6901, `*` for
 * every array element) addresses the tool's result value, which MCP carries
 * twice: in `structuredContent` and as JSON text in `content`. So it is
 * applied to `structuredContent` and to every text item whose text is a JSON
 * object or array (re-serialized when changed). Content the pointer cannot
 * address (text that is not JSON, images, audio, resources) is replaced by a
 * text item saying it was withheld: a result redaction never lets through
 * what it could not check. The input is never mutated.
 */
export function redactToolResult(result: unknown, obligations: readonly Obligation[]): unknown {
  if (obligations.length === 0 || !isPlainObject(result)) return result
  // The pipeline's own redactor (copy-on-write, `*` over arrays) works on `/params/…` pointers: re-root ours there.
  const mapped: Obligation[] = obligations.map((o) => ({ type: 'redact', path: `/params/${o.path.slice(RESULT_PREFIX.length)}` }))
  const redact = (value: unknown): unknown => applyObligations({ params: value as Record<string, unknown> }, mapped).params
  const out: Record<string, unknown> = { ...result }
  if (isPlainObject(result.structuredContent)) out.structuredContent = redact(result.structuredContent)
  if (Array.isArray(result.content)) {
    out.content = result.content.map((item: unknown) => {
      if (isPlainObject(item) && item.type === 'text' && typeof item.text === 'string') {
        let parsed: unknown
        try {
          parsed = JSON.parse(item.text)
        } catch {
          return { type: 'text', text: WITHHELD }
        }
        if (parsed === null || typeof parsed !== 'object') return { type: 'text', text: WITHHELD }
        const r = redact(parsed)
        return r === parsed ? item : { ...item, text: JSON.stringify(r) }
      }
      return { type: 'text', text: WITHHELD }
    })
  }
  return out
}
