/**
 * Approvals inside the MCP conversation (docs/reference.md "Gateway", MCP
 * mode): an `approval_needed` `tools/call` is answered with a URL-mode
 * elicitation pointing at the approval's console page, and the client's
 * retry of the same call is let through once the request is approved, the
 * gateway fetching and spending the one-time override itself, so the agent
 * never handles an override token.
 *
 * Two revisions, negotiated per request (`MCP-Protocol-Version` header or
 * `_meta["io.modelcontextprotocol/protocolVersion"]`):
 *
 * - 2025-11-25 (sessions; schema/2025-11-25/schema.ts of the specification):
 *   a client that declared `capabilities.elicitation.url` at `initialize`
 *   (remembered per `Mcp-Session-Id`) gets the JSON-RPC error -32042
 *   `URLElicitationRequiredError`, `data.elicitations` = one
 *   `ElicitRequestURLParams` (`mode: "url"`, `elicitationId`, `url`,
 *   `message`). When the request is decided, the gateway sends
 *   `notifications/elicitation/complete` `{elicitationId}` on the session's
 *   GET stream if one is open (it follows the request's status URL with the
 *   agent's token, as the SDK does). The retry of the same call by the same
 *   agent (same tool, canonical arguments and resource, in any session of
 *   its; the override binds the policy version too) is decided with the
 *   approval's override, once.
 * - 2026-07-28 (stateless; schema/2026-07-28/schema.ts and
 *   basic/patterns/mrtr.mdx, Multi Round-Trip Requests, SEP-2322): a client
 *   whose request `_meta["io.modelcontextprotocol/clientCapabilities"]`
 *   declares `elicitation.url` gets an `InputRequiredResult`
 *   (`resultType: "input_required"`, `inputRequests` = one
 *   `elicitation/create` URL request, `requestState` sealed by the gateway,
 *   request-state.ts). The retry carrying `requestState` is decided with the
 *   approval's override once the request is approved; the state's id is
 *   claimed in the replay cache (shared over Redis when configured), so a
 *   replayed state is refused, and so is a tampered, expired or foreign one
 *   (JSON-RPC -32602).
 *
 * Clients without the capability get the tool error they always got.
 */
import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { decodeJwt, type JWTPayload } from 'jose'
import { LRUCache } from 'lru-cache'
import { AegisError, Unavailable } from '../../../errors.js'
import { canonicalHash } from '../../../lib/canonical-json.js'
import type { GatewayDeps } from '../../deps.js'
import type { DecisionOutcome } from '../../pipeline/index.js'
import type { TokenView } from '../../pipeline/token-view.js'
import { isPlainObject } from '../common.js'
import { INVALID_PARAMS, rpcError, type JsonRpcId } from './jsonrpc.js'
import { ElicitationBus, type BusMessage } from './elicitation-bus.js'
import { RequestStateSealer, type RequestStateClaims } from './request-state.js'

/** MCP 2025-11-25 `URL_ELICITATION_REQUIRED`. */
export const URL_ELICITATION_REQUIRED = -32042
/** First revision without sessions, answering with `InputRequiredResult` instead of server requests. */
export const MRTR_FROM = '2026-07-28'
/** Key of the approval's URL elicitation in an `InputRequiredResult`'s `inputRequests`. */
export const APPROVAL_INPUT_KEY = 'aegis/approval'
/** `_meta` key of a refused call's decision (as on the tool error). */
const DECISION_META_KEY = 'aegis/decision'
const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion'
const META_CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities'

/** How long a sealed state is good for (seconds): past the default approval lifetime (900 s) plus the override's (300 s). */
export const REQUEST_STATE_TTL_SECONDS = 3600
const MAX_SESSIONS = 100_000
const MAX_PENDING = 10_000
const MAX_WATCHERS = 1_000
const SESSION_TTL_MS = 24 * 3600 * 1000
const MAX_SESSION_ID = 256
const LONG_POLL_SECONDS = 30
const MAX_POLLS = 150
const MAX_STATUS_BYTES = 64 * 1024
const STATUS_TIMEOUT_MS = 5_000

/** How approvals reach the client of one request. */
export type ApprovalChannel =
  /** No URL elicitation: the tool error (with `resultType` under 2026-07-28). */
  | { kind: 'tool-error'; mrtr: boolean }
  /** 2025-11-25, a session whose client declared `elicitation.url`. */
  | { kind: 'session'; sessionId: string }
  /** 2026-07-28, a request declaring `elicitation.url`. */
  | { kind: 'mrtr' }

/** One tools/call as the approval flow sees it. */
export interface ApprovalCall {
  id: JsonRpcId
  channel: ApprovalChannel
  params: Record<string, unknown>
  token: string
  tool: string
  args: Record<string, unknown>
  resource: string
  /** Steps 1–3 of the pipeline for this call (the token's view), run before anything is said about a state. */
  authenticate: () => TokenView | Promise<TokenView>
}

/** What to do before deciding: decide with this override, or answer this message without deciding. */
export interface Prepared {
  override: string | null
  answer: Record<string, unknown> | null
  /** A 2026-07-28 `requestState` of the gateway's was spent: it and the approval's input response are not forwarded. */
  stateSpent?: boolean
}

const DECIDE: Prepared = Object.freeze({ override: null, answer: null }) as Prepared

/** `params` without the gateway's `requestState` and the response to its approval input request (the tool server issued neither). */
export function withoutSpentState(params: Record<string, unknown>): Record<string, unknown> {
  const { requestState: _state, inputResponses, ...rest } = params
  if (isPlainObject(inputResponses)) {
    const { [APPROVAL_INPUT_KEY]: _approval, ...others } = inputResponses
    if (Object.keys(others).length > 0) rest.inputResponses = others
  }
  return rest
}

interface StatusView {
  status: 'pending' | 'approved' | 'denied' | 'expired'
  override_token?: string
  reason?: string
}

interface PendingElicitation {
  approvalId: string
  elicitationId: string
}

type Send = (data: string) => void

export class McpApprovals {
  private readonly sessions = new LRUCache<string, true>({ max: MAX_SESSIONS, ttl: SESSION_TTL_MS })
  private readonly pending = new LRUCache<string, PendingElicitation>({ max: MAX_PENDING, ttl: REQUEST_STATE_TTL_SECONDS * 1000 })
  /** Approvals whose override was spent: never waited for again (an opener may still name one for a moment). */
  private readonly spent = new LRUCache<string, true>({ max: MAX_PENDING, ttl: REQUEST_STATE_TTL_SECONDS * 1000 })
  private readonly streams = new Map<string, Set<Send>>()
  private readonly watchers = new Map<string, AbortController>()
  private readonly sealer: RequestStateSealer
  private readonly statusBase: string
  private readonly consoleBase: string
  /** With Redis: the other gateway processes' news, and ours for them (elicitation-bus.ts). */
  private readonly bus: ElicitationBus | null
  private closed = false

  constructor(private readonly deps: Pick<GatewayDeps, 'config' | 'replay' | 'clock' | 'logger' | 'decisions' | 'gatewayId' | 'tuning' | 'approvals'>) {
    const secret = deps.config.gateway.mcpStateSecret
    this.sealer = new RequestStateSealer(secret)
    this.statusBase = (deps.config.controlPlaneUrl ?? deps.config.issuer).replace(/\/+$/, '')
    this.consoleBase = deps.config.issuer.replace(/\/+$/, '')
    this.bus = deps.config.redisUrl
      ? new ElicitationBus(deps.config.redisUrl, `${deps.tuning.feedChannel}:mcp-approvals`, deps.logger, deps.tuning.redisCommandTimeoutMs)
      : null
    this.bus?.onMessage((m) => this.apply(m))
  }

  /** Stops every status watch and leaves the bus. */
  async close(): Promise<void> {
    this.closed = true
    for (const ac of this.watchers.values()) ac.abort()
    this.watchers.clear()
    await this.bus?.close()
  }

  /** What another gateway process published. */
  private apply(m: BusMessage): void {
    if (m.t === 'session') {
      if (m.capable) this.sessions.set(m.sid, true)
      else this.sessions.delete(m.sid)
    } else if (m.t === 'pending') this.pending.set(m.key, { approvalId: m.approvalId, elicitationId: m.elicitationId })
    else if (m.t === 'spent') {
      if (m.key !== null) this.pending.delete(m.key)
      this.spent.set(m.approvalId, true)
      // This process's approval opener may still name the spent request for an identical ask: it must open a new one.
      this.deps.approvals.forget?.(m.approvalId)
    } else this.deliver(m.sid, m.elicitationId)
  }

  /** The call no longer waits for `approvalId` (its override is being spent, or it was decided otherwise), here and on every process. */
  private spend(key: string | null, approvalId: string): void {
    if (key !== null) this.pending.delete(key)
    this.spent.set(approvalId, true)
    this.bus?.publish({ t: 'spent', key, approvalId })
  }

  /** `initialize` was answered: remember whether this session's client shows URL elicitations (2025-11-25 `capabilities.elicitation.url`). */
  initialized(sessionId: unknown, params: Record<string, unknown> | undefined): void {
    if (typeof sessionId !== 'string' || sessionId.length === 0 || sessionId.length > MAX_SESSION_ID) return
    const caps = params?.capabilities
    const elicitation = isPlainObject(caps) ? caps.elicitation : undefined
    const capable = isPlainObject(elicitation) && isPlainObject(elicitation.url)
    if (capable) this.sessions.set(sessionId, true)
    else this.sessions.delete(sessionId)
    this.bus?.publish({ t: 'session', sid: sessionId, capable })
  }

  /**
   * The session's GET stream is open: `send` writes one SSE event on it (see
   * rewriteSse). Every session's stream is known while open, whatever this
   * process learnt of its capabilities: the `-32042` may be answered by
   * another process.
   */
  streamOpened(sessionId: unknown): ((send: Send, stream: NodeJS.EventEmitter) => void) | null {
    if (typeof sessionId !== 'string' || sessionId.length === 0 || sessionId.length > MAX_SESSION_ID) return null
    return (send, stream) => {
      const set = this.streams.get(sessionId) ?? new Set<Send>()
      this.streams.set(sessionId, set)
      set.add(send)
      stream.once('close', () => {
        set.delete(send)
        if (set.size === 0 && this.streams.get(sessionId) === set) this.streams.delete(sessionId)
      })
    }
  }

  /** How approvals reach the client of this request. */
  channel(headers: IncomingHttpHeaders, params: Record<string, unknown>): ApprovalChannel {
    const meta = isPlainObject(params._meta) ? params._meta : undefined
    const header = headers['mcp-protocol-version']
    const version =
      typeof header === 'string' ? header : meta !== undefined && typeof meta[META_PROTOCOL_VERSION] === 'string' ? meta[META_PROTOCOL_VERSION] : ''
    if (version >= MRTR_FROM) {
      // Capabilities are per request from 2026-07-28: the server must not infer them from earlier requests.
      const caps = meta?.[META_CLIENT_CAPABILITIES]
      const elicitation = isPlainObject(caps) ? caps.elicitation : undefined
      return isPlainObject(elicitation) && isPlainObject(elicitation.url) ? { kind: 'mrtr' } : { kind: 'tool-error', mrtr: true }
    }
    const sid = headers['mcp-session-id']
    return typeof sid === 'string' && this.sessions.has(sid) ? { kind: 'session', sessionId: sid } : { kind: 'tool-error', mrtr: false }
  }

  /** Before deciding: the override of an approved request this call retries, or an answer without deciding. */
  async prepare(call: ApprovalCall): Promise<Prepared> {
    if (call.channel.kind === 'mrtr' || (call.channel.kind === 'tool-error' && call.channel.mrtr)) {
      return call.params.requestState === undefined ? DECIDE : this.prepareState(call)
    }
    // Nothing asked for in this conversation: no look-up at all (the common case costs nothing).
    return this.pending.size === 0 ? DECIDE : this.prepareRetry(call)
  }

  /**
   * 2025-11-25: the same call from the same agent (any of its sessions) after
   * a URL elicitation. The agent is read from the token without verifying
   * it, only to find the entry: the control plane shows the approval's
   * status to that agent's valid tokens only, and the override the pipeline
   * then checks is bound to the agent, tool, arguments, resource and policy
   * version.
   */
  private async prepareRetry(call: ApprovalCall): Promise<Prepared> {
    let claims: JWTPayload
    try {
      claims = decodeJwt(call.token)
    } catch {
      return DECIDE
    }
    if (typeof claims.tenant !== 'string' || typeof claims.agent_id !== 'string') return DECIDE
    const key = callKey(claims.tenant, claims.agent_id, call.tool, call.args, call.resource)
    if (key === null) return DECIDE
    const entry = this.pending.get(key)
    if (entry === undefined) return DECIDE
    const s = await this.status(entry.approvalId, call.token)
    if (s === null) return DECIDE
    if (s.status === 'approved' && s.override_token !== undefined) {
      // Spent here, whatever the decision makes of it: a second retry asks anew.
      this.spend(key, entry.approvalId)
      return { override: s.override_token, answer: null }
    }
    if (s.status === 'pending') return DECIDE
    this.spend(key, entry.approvalId)
    if (s.status === 'denied') {
      await call.authenticate()
      return { override: null, answer: denied(call, entry.approvalId, s.reason) }
    }
    return DECIDE
  }

  private async prepareState(call: ApprovalCall): Promise<Prepared> {
    // The token first: nothing is said about a state to a caller that is not authenticated.
    const view = await call.authenticate()
    const refuse = (why: string, st: RequestStateClaims | null): Prepared => {
      this.deps.decisions.record({
        type: 'token.refused',
        ts: this.deps.clock.now(),
        gateway_id: this.deps.gatewayId,
        mode: 'mcp',
        tenant: view.facts.tenant,
        agent_id: view.facts.agentId,
        client_id: view.facts.clientId,
        jti: view.facts.jti,
        tool: call.tool,
        resource: call.resource,
        error: `requestState refused: ${why}`,
        ...(st !== null ? { policy_version: st.pv } : {}),
      })
      return { override: null, answer: rpcError(call.id, INVALID_PARAMS, `requestState refused: ${why}`) }
    }
    const st = this.sealer.open(call.params.requestState)
    if (st === null) return refuse('it is not a state this gateway issued, or it was altered', null)
    const hash = paramsHash(call.args)
    if (
      hash === null ||
      st.tenant !== view.facts.tenant ||
      st.agent !== view.facts.agentId ||
      st.tool !== call.tool ||
      st.ph !== hash ||
      st.res !== call.resource
    ) {
      return refuse('it was issued for a different call', st)
    }
    const nowSeconds = Math.floor(this.deps.clock.now() / 1000)
    if (st.exp <= nowSeconds) return refuse('it expired; call again without it to ask for a new approval', st)
    const s = await this.status(st.aid, call.token)
    if (s === null || s.status === 'expired') return DECIDE
    if (s.status === 'pending') return DECIDE
    if (s.status === 'denied') return { override: null, answer: denied(call, st.aid, s.reason) }
    if (s.override_token === undefined) return DECIDE
    let fresh: boolean
    try {
      fresh = await this.deps.replay.claim(`mcp-state:${st.jti}`, st.exp)
    } catch (err) {
      throw new Unavailable('the replay cache cannot be reached to spend this requestState', { cause: err })
    }
    if (!fresh) return refuse('it was already used; call again without it to ask for a new approval', st)
    this.spend(null, st.aid)
    return { override: s.override_token, answer: null, stateSpent: true }
  }

  /** The answer to an enforced `approval_needed` with an approval request, for a client that shows URL elicitations; null otherwise. */
  answer(call: ApprovalCall, outcome: DecisionOutcome): Record<string, unknown> | null {
    const approval = outcome.approval
    if (outcome.decision !== 'approval_needed' || approval === null || call.channel.kind === 'tool-error') return null
    const url = `${this.consoleBase}/console/approvals/${encodeURIComponent(approval.id)}`
    const decision = { decision: outcome.decision, reasons: outcome.reasons, policy_version: outcome.policyVersion, approval }
    const message =
      `Aegis: ${call.tool} needs a human approval (request ${approval.id}). Open the link to review it; once it is approved, ` +
      `make the same call again. Reasons: ${outcome.reasons.join('; ')}`
    if (call.channel.kind === 'session') {
      const key = callKey(outcome.token.facts.tenant, outcome.token.facts.agentId, call.tool, call.args, call.resource)
      // The approval id is unique: the elicitation of one request is the same one whenever this call is repeated.
      const elicitationId = approval.id
      if (key !== null && !this.spent.has(approval.id)) {
        this.pending.set(key, { approvalId: approval.id, elicitationId })
        this.bus?.publish({ t: 'pending', key, approvalId: approval.id, elicitationId })
      }
      this.watch(call.channel.sessionId, approval.id, elicitationId, call.token)
      return rpcError(call.id, URL_ELICITATION_REQUIRED, 'This call needs a human approval: open the URL, then make the same call again', {
        elicitations: [{ mode: 'url', elicitationId, url, message }],
        [DECISION_META_KEY]: decision,
      })
    }
    const f = outcome.token.facts
    const ph = paramsHash(call.args)
    if (ph === null) return null
    const requestState = this.sealer.seal({
      aid: approval.id,
      tenant: f.tenant,
      agent: f.agentId,
      tool: call.tool,
      ph,
      res: call.resource,
      pv: outcome.policyVersion,
      exp: Math.floor(this.deps.clock.now() / 1000) + REQUEST_STATE_TTL_SECONDS,
      jti: randomBytes(16).toString('base64url'),
    })
    return {
      jsonrpc: '2.0',
      id: call.id,
      result: {
        resultType: 'input_required',
        inputRequests: { [APPROVAL_INPUT_KEY]: { method: 'elicitation/create', params: { mode: 'url', message, url } } },
        requestState,
        _meta: { [DECISION_META_KEY]: decision },
      },
    }
  }

  /** A result the gateway makes, as the request's revision wants it (2026-07-28 results say `resultType`). */
  complete(channel: ApprovalChannel, message: Record<string, unknown>): Record<string, unknown> {
    const mrtr = channel.kind === 'mrtr' || (channel.kind === 'tool-error' && channel.mrtr)
    if (!mrtr || !isPlainObject(message.result)) return message
    return { ...message, result: { resultType: 'complete', ...message.result } }
  }

  /**
   * The answer to a refused override this flow fetched (the policy version
   * changed, it expired, another gateway spent it): a JSON-RPC error in the
   * conversation instead of an HTTP 401 that would tell the client its
   * access token is bad. Null for any other error.
   */
  overrideRefused(call: ApprovalCall, prepared: Prepared, err: unknown): Record<string, unknown> | null {
    if (prepared.override === null || !(err instanceof AegisError) || err.code !== 'invalid_token' || !err.message.includes('override token')) return null
    return rpcError(call.id, INVALID_PARAMS, `the approval no longer fits this call (${err.message}); make the call again to ask for a new approval`)
  }

  /**
   * Follows an approval's status (long polls with the agent's token, the
   * SDK's way) until it is decided, then sends
   * `notifications/elicitation/complete` on the session's open GET streams.
   * Stops when the token is no longer accepted or the request expired.
   */
  private watch(sessionId: string, approvalId: string, elicitationId: string, token: string): void {
    const key = `${sessionId}\n${approvalId}`
    if (this.closed || this.watchers.has(key) || this.watchers.size >= MAX_WATCHERS) return
    const ac = new AbortController()
    this.watchers.set(key, ac)
    void (async () => {
      try {
        for (let i = 0; i < MAX_POLLS && !ac.signal.aborted; i++) {
          let s: StatusView | null
          try {
            s = await this.status(approvalId, token, LONG_POLL_SECONDS, ac.signal)
          } catch {
            if (ac.signal.aborted) return
            await sleep(1000, undefined, { signal: ac.signal }).catch(() => {})
            continue
          }
          if (s === null) return
          if (s.status !== 'pending') {
            this.notifyComplete(sessionId, elicitationId)
            return
          }
        }
      } finally {
        if (this.watchers.get(key) === ac) this.watchers.delete(key)
      }
    })()
  }

  /** Sends the completion on the session's streams here, and asks the other processes to do the same on theirs. */
  private notifyComplete(sessionId: string, elicitationId: string): void {
    this.deliver(sessionId, elicitationId)
    this.bus?.publish({ t: 'complete', sid: sessionId, elicitationId })
  }

  private deliver(sessionId: string, elicitationId: string): void {
    const sends = this.streams.get(sessionId)
    if (sends === undefined) return
    const data = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/elicitation/complete', params: { elicitationId } })
    for (const send of sends) send(data)
  }

  /**
   * The approval's status as its agent sees it (`GET /v1/approvals/{id}`
   * with the agent's own token); null when the control plane does not show
   * it to this token (another agent's request, an unknown id, a token it no
   * longer accepts). Throws `Unavailable` when it cannot be asked.
   */
  private async status(approvalId: string, token: string, waitSeconds = 0, signal?: AbortSignal): Promise<StatusView | null> {
    const url = `${this.statusBase}/v1/approvals/${encodeURIComponent(approvalId)}${waitSeconds > 0 ? `?wait=${waitSeconds}` : ''}`
    const timeout = AbortSignal.timeout(STATUS_TIMEOUT_MS + waitSeconds * 1000)
    let res: Response
    try {
      res = await fetch(url, {
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
        redirect: 'error',
      })
    } catch (err) {
      throw new Unavailable('the approval service cannot be reached', { cause: err })
    }
    const text = await res.text()
    if (res.status === 404 || res.status === 401) return null
    if (!res.ok || text.length > MAX_STATUS_BYTES) throw new Unavailable(`the approval service answered ${res.status}`)
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new Unavailable('the approval service answered malformed JSON')
    }
    if (!isPlainObject(json) || !['pending', 'approved', 'denied', 'expired'].includes(json.status as string)) {
      throw new Unavailable('the approval service answered an unknown status')
    }
    const view: StatusView = { status: json.status as StatusView['status'] }
    if (typeof json.override_token === 'string') view.override_token = json.override_token
    if (typeof json.reason === 'string') view.reason = json.reason.slice(0, 1000)
    return view
  }
}

/** base64url SHA-256 of the RFC 8785 canonical arguments (as an override binds them); null when they have no canonical form. */
function paramsHash(args: Record<string, unknown>): string | null {
  try {
    return canonicalHash(args)
  } catch {
    return null
  }
}

/** Tenant, agent, tool, canonical arguments and resource of a call; null when the arguments have no canonical form. */
function callKey(tenant: string, agent: string, tool: string, args: Record<string, unknown>, resource: string): string | null {
  const hash = paramsHash(args)
  return hash === null ? null : JSON.stringify([tenant, agent, tool, hash, resource])
}

/** The tool error of a call whose approval request a human denied. */
function denied(call: ApprovalCall, approvalId: string, reason: string | undefined): Record<string, unknown> {
  const text = `A human denied approval ${approvalId} for this call${reason ? `: ${reason}` : ''}. Making the call again asks for a new approval.`
  const result: Record<string, unknown> = {
    content: [{ type: 'text', text }],
    isError: true,
    _meta: { [DECISION_META_KEY]: { decision: 'deny', reasons: [text], approval: { id: approvalId } } },
  }
  if (call.channel.kind === 'mrtr' || (call.channel.kind === 'tool-error' && call.channel.mrtr)) result.resultType = 'complete'
  return { jsonrpc: '2.0', id: call.id, result }
}
