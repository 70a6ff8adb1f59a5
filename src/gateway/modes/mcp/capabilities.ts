/**
 * `initialize` advertises only what the route lets through (docs/mcp.md
 * "Resources, prompts and the other methods"): the upstream's
 * `InitializeResult.capabilities` is rewritten so a client never learns of
 * a feature whose every method the gateway would refuse.
 */
import { isPlainObject } from '../common.js'
import { methodAllowed } from './jsonrpc.js'
import type { ResponseRewrite } from './sse.js'

/** Each server capability and the request methods it stands for: kept when the route allows at least one of them. */
const CAPABILITY_METHODS: Readonly<Record<string, readonly string[]>> = {
  tools: ['tools/list', 'tools/call'],
  resources: ['resources/list', 'resources/templates/list', 'resources/read', 'resources/subscribe'],
  prompts: ['prompts/list', 'prompts/get'],
  logging: ['logging/setLevel'],
  completions: ['completion/complete'],
  tasks: ['tasks/get', 'tasks/list', 'tasks/result', 'tasks/cancel'],
}

/**
 * The capabilities a route advertises, from the upstream's. A capability
 * whose methods the route refuses is removed, and so is `resources.subscribe`
 * without `resources/subscribe`; `experimental` and capabilities this
 * gateway does not know are removed too, as nothing tells which methods they
 * would need (fail closed: an unknown feature is not advertised).
 */
export function advertisedCapabilities(capabilities: Record<string, unknown>, allow: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(capabilities)) {
    const methods = CAPABILITY_METHODS[name]
    if (methods === undefined || !methods.some((m) => methodAllowed(allow, m))) continue
    if (name === 'resources' && isPlainObject(value) && value.subscribe !== undefined && !methodAllowed(allow, 'resources/subscribe')) {
      const { subscribe: _dropped, ...rest } = value
      out[name] = rest
    } else {
      out[name] = value
    }
  }
  return out
}

/** Rewrites an `initialize` response's capabilities for the route. */
export function initializeRewrite(allow: readonly string[]): ResponseRewrite {
  return (m) => {
    const result = m.result
    if (!isPlainObject(result) || !isPlainObject(result.capabilities)) return m
    return { ...m, result: { ...result, capabilities: advertisedCapabilities(result.capabilities, allow) } }
  }
}
