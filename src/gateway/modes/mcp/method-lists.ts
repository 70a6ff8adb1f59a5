/**
 * The answers the gateway rewrites for requests it does not decide
 * (docs/mcp.md "Resources, prompts and the other methods"): the
 * `resources/list`, `resources/templates/list` and `prompts/list` listings
 * show only what the agent may use, as `tools/list` does, and
 * `completion/complete` answers only for a prompt or resource the agent may
 * use. The listings are a courtesy to the model; each read and each prompt
 * is decided on its own.
 */
import type { VerifiedManifest } from '../../manifests.js'
import type { TokenView } from '../../pipeline/token-view.js'
import { isPlainObject } from '../common.js'
import { promptAction, resourceAction, templateAction } from './method-actions.js'
import type { ResponseRewrite } from './sse.js'
import type { ToolVisibility } from './tool-visibility.js'

/** Listing methods whose answers are filtered, and the array each filters. */
export const LISTS: Readonly<Record<string, string>> = {
  'resources/list': 'resources',
  'resources/templates/list': 'resourceTemplates',
  'prompts/list': 'prompts',
}

/** The filter for a `LISTS` method's answer. */
export function listFilter(
  method: string,
  visibility: ToolVisibility,
  view: TokenView,
  manifest: VerifiedManifest,
  routeResource: string,
  clientAddress: string | null,
): ResponseRewrite {
  const key = LISTS[method]!
  return (m) => {
    const result = m.result
    if (!isPlainObject(result) || !Array.isArray(result[key])) return m
    const items: unknown[] = result[key]
    let shown: boolean[]
    if (method === 'resources/templates/list') {
      // A template names no one resource to decide on: it is shown when its scheme's action is among the agent's capabilities.
      shown = items.map((t) => {
        const action = isPlainObject(t) ? templateAction(t.uriTemplate) : null
        return action !== null && manifest.capabilitySet.has(action)
      })
    } else {
      const calls = items.map((it) => {
        if (!isPlainObject(it)) return null
        if (method === 'prompts/list') {
          const action = promptAction(it.name)
          return action === null ? null : { action, resource: routeResource }
        }
        const target = resourceAction(it.uri)
        return typeof target === 'string' ? null : target
      })
      const known = calls.filter((c) => c !== null)
      const verdicts = visibility.visibleCalls(view, manifest, known, clientAddress)
      let k = 0
      shown = calls.map((c) => (c === null ? false : verdicts[k++]!))
    }
    return { ...m, result: { ...result, [key]: items.filter((_it, i) => shown[i]) } }
  }
}

/**
 * Why a `completion/complete` request is refused, or null: its `ref` must
 * name a prompt (`ref/prompt`) or a resource (`ref/resource`, a URI or URI
 * template) whose action is among the agent's capabilities, since the
 * completions describe that prompt's or resource's arguments.
 */
export function completionRefusal(params: Record<string, unknown> | undefined, manifest: VerifiedManifest): string | null {
  const ref = params?.ref
  if (!isPlainObject(ref)) return 'completion/complete needs params.ref'
  let action: string | null = null
  if (ref.type === 'ref/prompt') action = promptAction(ref.name)
  else if (ref.type === 'ref/resource') action = templateAction(ref.uri)
  if (action === null) return 'completion/complete needs params.ref naming a prompt (ref/prompt) or a resource URI (ref/resource)'
  if (!manifest.capabilitySet.has(action)) return `${action} is not in the agent's capability manifest`
  return null
}
