/**
 * `resources/read`, `resources/subscribe` and `prompts/get` are decided by
 * the pipeline like `tools/call` (docs/mcp.md "Resources, prompts and the
 * other methods"): same four decisions, same obligations, same approvals and
 * overrides. A refusal is a JSON-RPC error, as these methods have no result
 * that can carry one (tool results have `isError`; resources and prompts do
 * not), with the decision under `error.data["aegis/decision"]`.
 */
import type { FastifyRequest } from 'fastify'
import type { GatewayDeps } from '../../deps.js'
import type { DecisionOutcome, DecisionPipeline } from '../../pipeline/index.js'
import type { TokenView } from '../../pipeline/token-view.js'
import { blocks, header, isPlainObject } from '../common.js'
import { authenticate } from './authenticate.js'
import { DECISION_META_KEY, OVERRIDE_META_KEY } from './decision-meta.js'
import { GATEWAY_ERROR, INVALID_PARAMS, rpcError, type ClientMessage } from './jsonrpc.js'
import { promptAction, resourceAction } from './method-actions.js'
import { redactPromptResult, redactResourceResult } from './method-redaction.js'
import { resultObligations } from './result-redaction.js'
import type { ResponseRewrite } from './sse.js'

type Request = Extract<ClientMessage, { kind: 'request' }>

/** Methods decided here (when the route lets them through). */
export const DECIDED_METHODS: ReadonlySet<string> = new Set(['resources/read', 'resources/subscribe', 'prompts/get'])

/** What to do with a decided request: answer it here, or forward `body` and rewrite the answer with `rewrite`. */
export type MethodPlan = { answer: Record<string, unknown> } | { body: string; view: TokenView; rewrite: ResponseRewrite | null }

const EMPTY_PARAMS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>

/** What the policy sees of one request, and how the decided parameters go back into it. */
interface Subject {
  action: string
  resource: string
  params: Record<string, unknown>
  /** The request's params with the decided (possibly sanitized) parameters put back. */
  rebuild(decided: Record<string, unknown>): Record<string, unknown> | string
  redact: ((result: unknown, outcome: DecisionOutcome) => unknown) | null
}

function subjectOf(msg: Request, routeResource: string): Subject | string {
  const params = msg.params ?? EMPTY_PARAMS
  if (msg.method === 'prompts/get') {
    const action = promptAction(params.name)
    const args = params.arguments === undefined || params.arguments === null ? EMPTY_PARAMS : params.arguments
    if (action === null || !isPlainObject(args)) {
      return 'prompts/get needs params.name (a prompt name: letters, digits, . _ : / -) and params.arguments (an object)'
    }
    return {
      action,
      resource: routeResource,
      params: args,
      rebuild: (decided) => ({ ...params, arguments: decided }),
      redact: (result, outcome) => redactPromptResult(result, resultObligations(outcome.obligations)),
    }
  }
  const target = resourceAction(params.uri)
  if (typeof target === 'string') return `${msg.method}: ${target}`
  return {
    action: target.action,
    resource: target.resource,
    // The URI is in the parameters too: an override binds the parameters, so it is good for this one URI only.
    params: { uri: target.resource },
    // A redaction of the URI itself would forward a request for another resource than the one decided (and disagree with its Mcp-Name header).
    rebuild: (decided) => (decided.uri === target.resource ? params : 'the policy would rewrite the resource URI: refused'),
    redact: msg.method === 'resources/read' ? (result, outcome) => redactResourceResult(result, resultObligations(outcome.obligations)) : null,
  }
}

/** Decides one `resources/read`, `resources/subscribe` or `prompts/get` request. */
export async function decideMethod(
  pipeline: DecisionPipeline,
  deps: GatewayDeps,
  routeResource: string,
  request: FastifyRequest,
  token: string | undefined,
  msg: Request,
): Promise<MethodPlan> {
  const subject = subjectOf(msg, routeResource)
  if (typeof subject === 'string') {
    // A bad token is refused as such before the request's shape is judged, as for tools/call.
    await authenticate(deps, token, msg.method, routeResource, request)
    return { answer: rpcError(msg.id, INVALID_PARAMS, subject) }
  }
  const params = msg.params ?? EMPTY_PARAMS
  const meta = isPlainObject(params._meta) ? params._meta : null
  const metaOverride = meta !== null && typeof meta[OVERRIDE_META_KEY] === 'string' ? meta[OVERRIDE_META_KEY] : null
  const outcome = await pipeline.decide({
    token,
    tool: subject.action,
    params: subject.params,
    resource: subject.resource,
    dryRun: false,
    override: header(request, 'aegis-override') ?? metaOverride,
    clientAddress: request.ip,
    mode: 'mcp',
    sender: request,
  })
  if (blocks(outcome)) return { answer: refusal(msg.id, outcome) }
  const sanitized = outcome.enforced && outcome.obligations.length > 0
  const decided = subject.rebuild(sanitized ? outcome.params : subject.params)
  if (typeof decided === 'string') return { answer: rpcError(msg.id, GATEWAY_ERROR, decided) }
  const rebuilt = { ...decided }
  if (meta !== null && OVERRIDE_META_KEY in meta) {
    // The override token is the agent's credential for this one request: it never reaches the server.
    const { [OVERRIDE_META_KEY]: _dropped, ...rest } = meta
    rebuilt._meta = rest
  }
  const redact = subject.redact
  const rewrite: ResponseRewrite | null =
    redact === null || !outcome.enforced || resultObligations(outcome.obligations).length === 0
      ? null
      : (m) => ('result' in m ? { ...m, result: redact(m.result, outcome) } : m)
  return { body: JSON.stringify({ ...msg.raw, params: rebuilt }), view: outcome.token, rewrite }
}

/** The JSON-RPC error a refused request gets: the reasons, and for an approval its id and status URL. */
function refusal(id: Request['id'], o: DecisionOutcome): Record<string, unknown> {
  const decision: Record<string, unknown> = { decision: o.decision, reasons: o.reasons, policy_version: o.policyVersion }
  let text: string
  if (o.decision === 'approval_needed') {
    if (o.approval !== null) {
      decision.approval = o.approval
      text =
        `This request needs human approval (approval ${o.approval.id}). Poll ${o.approval.status_url} with the same bearer token; once approved, ` +
        `send exactly the same request again with the override_token in the Aegis-Override header (or in params._meta["${OVERRIDE_META_KEY}"]).`
    } else {
      text = 'This request needs human approval, but this gateway cannot open approval requests.'
    }
  } else {
    text = `Aegis denied this request (policy ${o.policyVersion}).`
  }
  return rpcError(id, GATEWAY_ERROR, `${text} Reasons: ${o.reasons.join('; ')}`, { [DECISION_META_KEY]: decision })
}
