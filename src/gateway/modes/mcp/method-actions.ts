/**
 * How MCP methods other than `tools/*` name what they touch, for the
 * decision pipeline and the list filters (docs/mcp.md "Resources, prompts
 * and the other methods"). A resource is decided as the action
 * `resource:<scheme>` (its URI's scheme, lower-cased) on the resource named
 * by its URI; a prompt as the action `prompt:<name>` on the route. The
 * `resource:` and `prompt:` prefixes are reserved: MCP tool names use only
 * letters, digits, `_`, `-` and `.`, and a tool called `resource:file` must
 * never be decided under the policies written for reading files.
 */
import { MAX_RESOURCE_LENGTH, TOOL_NAME } from '../common.js'

export const RESOURCE_ACTION_PREFIX = 'resource:'
export const PROMPT_ACTION_PREFIX = 'prompt:'

/** RFC 3986 scheme, bounded. */
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]{0,31}):/
/** A `.` or `..` path segment, literal or percent-encoded: `file:///srv/../etc` must not pass as something under `/srv`. */
const DOT_SEGMENT = /(^|[/\\])(\.|%2e){1,2}($|[/\\?#])/i

/** Whitespace and control characters: never part of a URI a policy could have meant. */
function hasUnsafeChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c <= 0x20 || (c >= 0x7f && c <= 0x9f)) return true
  }
  return false
}

/** True for the action names the gateway keeps for resources and prompts (a tool of that name is refused). */
export function reservedAction(name: string): boolean {
  return name.startsWith(RESOURCE_ACTION_PREFIX) || name.startsWith(PROMPT_ACTION_PREFIX)
}

/** What a resource URI is decided as, or why it cannot be decided. */
export function resourceAction(uri: unknown): { action: string; resource: string } | string {
  if (typeof uri !== 'string' || uri.length === 0 || uri.length > MAX_RESOURCE_LENGTH) {
    return `params.uri must be a URI of at most ${MAX_RESOURCE_LENGTH} characters`
  }
  const m = SCHEME.exec(uri)
  if (m === null) return 'params.uri must be an absolute URI (scheme:…)'
  if (hasUnsafeChar(uri)) return 'params.uri must not contain whitespace or control characters'
  if (DOT_SEGMENT.test(uri.slice(m[0].length))) return 'params.uri must not contain . or .. path segments'
  return { action: RESOURCE_ACTION_PREFIX + m[1]!.toLowerCase(), resource: uri }
}

/** The action of a URI template's resources (`resources/templates/list`, completions), or null when it names no scheme. */
export function templateAction(uriTemplate: unknown): string | null {
  if (typeof uriTemplate !== 'string' || uriTemplate.length > MAX_RESOURCE_LENGTH) return null
  const m = SCHEME.exec(uriTemplate)
  return m === null ? null : RESOURCE_ACTION_PREFIX + m[1]!.toLowerCase()
}

/** The action of a prompt, or null when its name cannot be one. */
export function promptAction(name: unknown): string | null {
  if (typeof name !== 'string') return null
  const action = PROMPT_ACTION_PREFIX + name
  return TOOL_NAME.test(action) ? action : null
}
