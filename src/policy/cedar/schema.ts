/**
 * The published Cedar schema of Aegis policies and the request mapping
 * (docs/reference.md "Policy"). `policies/schema.cedarschema` holds the same text
 * (a unit test keeps them equal).
 *
 * - principal `Agent::"<agent_id>"` with `tenant`, `agent_id`, `client_id`,
 *   `scopes` and `capabilities` from the verified token;
 * - action `Action::"<tool>"`, e.g. `Action::"payments.transfer"`; a tool
 *   `a.b.c` is a member of the action groups `Action::"a.*"` and
 *   `Action::"a.b.*"` (and `Action::"*"`), so `action in Action::"payments.*"`
 *   covers every payments tool;
 * - resource `Resource::"<target>"` with `id` (the empty string when the call
 *   names no target);
 * - context `{ params, time, client_address?, override, http? }`: the
 *   untrusted call parameters, epoch seconds, the caller's address when
 *   known, whether a valid one-time approval override accompanies the call,
 *   on reverse-proxy routes the HTTP request as forwarded, and for a
 *   delegated token its chain (`delegation`, docs/delegation.md).
 */

/** Cedar schema text of the entity and context types every bundle is validated against. */
export const AEGIS_CEDAR_SCHEMA = `// Aegis Cedar schema (docs/reference.md "Policy"). Actions are the tools: each bundle
// declares the actions its policies name (see README "Policy"), so they are
// not listed here.

// The agent calling the tool, as its verified token describes it.
entity Agent = {
  tenant: String,
  agent_id: String,
  client_id: String,
  scopes: Set<String>,
  capabilities: Set<String>,
};

// The call's target ("" when the call names none).
entity Resource = {
  id: String,
};

// The tool call's parameters: untrusted JSON, open-ended per tool. Guard
// every optional attribute with \`has\` (context.params has amount). MCP
// resources (action "resource:<scheme>") carry {uri}; prompts
// (action "prompt:<name>") their arguments.
type Params = {};

// A query string's decoded members: a String, or a Set<String> for a
// repeated key. Open-ended like Params: guard with \`has\`.
type Query = {};

// Reverse-proxy routes: the HTTP request exactly as it is forwarded.
type Http = {
  method: String,
  // Decoded path below the route's prefix ("/" at least).
  path: String,
  query: Query,
  // "json" (parsed into params), "opaque" (the route forwards it unread), "none".
  body: String,
  // base64url SHA-256 of an opaque body.
  body_sha256?: String,
};

// A delegated token's chain (docs/delegation.md): absent for an agent's own
// token, so guard with \`context has delegation\`.
type Delegation = {
  // Every agent of the chain, from the original subject to the current actor.
  chain: Set<String>,
  // Number of delegation hops (act levels): 1 for the first delegation.
  depth: Long,
  // The chain's first agent (the principal) and the agent acting now.
  origin: String,
  actor: String,
  // The person the chain acts for, and their identity provider, when a person delegated.
  user?: String,
  user_issuer?: String,
  // Resource ids the person's token lists (the trusted issuer's resources_claim; empty otherwise).
  user_resources: Set<String>,
};

type Context = {
  params: Params,
  // Epoch seconds at the gateway.
  time: Long,
  // The caller's network address, when the gateway knows it.
  client_address?: String,
  // A valid one-time approval override token accompanies the call.
  override: Bool,
  // Only on reverse-proxy routes (absent elsewhere: guard with \`has\`).
  http?: Http,
  // Only for delegated tokens (guard with \`has\`).
  delegation?: Delegation,
};
`

/** Entity type of the principal. */
export const PRINCIPAL_TYPE = 'Agent'
/** Entity type of the resource. */
export const RESOURCE_TYPE = 'Resource'

/** True for an action-group id (`*` or `prefix.*`). */
export function isActionGroup(id: string): boolean {
  return id === '*' || id.endsWith('.*')
}

/** True when `action` (a tool name) is a member of the action group `group`. */
export function inActionGroup(action: string, group: string): boolean {
  return action !== group && action.startsWith(group.slice(0, -1))
}

/** A Cedar string literal (the schema and policy grammars share its escapes). */
export function cedarString(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what this escapes
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`).replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`)}"`
}

/**
 * The validation schema of one bundle: the published entity and context
 * types plus an action for every tool and group its policies name. Tool names
 * are open-ended, so the bundle declares its actions by naming them; a typo
 * in a tool name therefore cannot be caught here, which is why `aegis policy
 * test` cases exist.
 */
export function bundleSchemaText(tools: Iterable<string>, groups: Iterable<string>): string {
  const groupList = [...new Set(groups)].filter(isActionGroup)
  const memberOf = (id: string): string => {
    const parents = groupList.filter((g) => inActionGroup(id, g))
    return parents.length > 0 ? ` in [${parents.map(cedarString).join(', ')}]` : ''
  }
  const lines: string[] = [AEGIS_CEDAR_SCHEMA]
  for (const g of groupList) lines.push(`action ${cedarString(g)}${memberOf(g)};`)
  // A placeholder tool inside each group (and at the top) so unscoped and
  // group-scoped policies have a request environment to be typed in.
  const placeholders = ['__any_tool__', ...groupList.map((g) => `${g.slice(0, -1)}__any_tool__`)]
  // One declaration per set of parent groups: Cedar parses a long list of
  // names in one declaration far faster than one declaration per action.
  const byParents = new Map<string, string[]>()
  for (const t of new Set([...tools, ...placeholders])) {
    if (isActionGroup(t)) continue
    const key = memberOf(t)
    const list = byParents.get(key) ?? []
    list.push(cedarString(t))
    byParents.set(key, list)
  }
  for (const [parents, names] of byParents) {
    lines.push(`action ${names.join(', ')}${parents} appliesTo { principal: ${PRINCIPAL_TYPE}, resource: ${RESOURCE_TYPE}, context: Context };`)
  }
  return lines.join('\n')
}
