/**
 * The gateway's approval hook (pipeline step 6, docs/reference.md "Approvals"):
 *
 * - with an `Aegis-Override` header: the override must verify for exactly
 *   this call ({@link verifyOverride}: signature with the gateway's JWKS keys,
 *   `typ`, expiry, binding to agent, tenant, tool, params hash, policy version
 *   and resource) and its jti is claimed once in the shared replay cache; the
 *   caller's access token has already passed steps 1–5. Then the decision
 *   becomes `allow`. A refused override is audited (`token.replayed` or
 *   `token.refused`) and answered `401 invalid_token`, like any bad token;
 *   the call is never decided as if the header were absent.
 * - without one: the control plane opens (or returns the already open)
 *   approval request, `POST /admin/v1/approvals` with the gateway token, and
 *   the answer carries its id and `status_url`. A cap refusal there is passed
 *   on as `429 rate_limited` with the control plane's reason; an unreachable
 *   control plane is `503` (fail closed).
 */
import { AegisError, InvalidRequest, Unavailable } from '../../errors.js'
import { wwwAuthenticate } from '../../http/error-handler.js'
import { LRUCache } from 'lru-cache'
import { canonicalHash, canonicalJson } from '../../lib/canonical-json.js'
import type { Clock } from '../../lib/clock.js'
import type { Logger } from '../../observability/logger.js'
import type { Metrics } from '../../observability/metrics.js'
import type { ReplayCache } from '../../store/replay-cache.js'
import type { AegisConfig } from '../../config/schema.js'
import type { ApprovalContext, ApprovalHook, ApprovalRef, ApprovalResolution, DecisionSink, GatewayAuditEvent, GatewayDeps } from '../deps.js'
import type { ControlPlaneClient } from '../control-plane-client.js'
import type { HttpCall } from '../../policy/types.js'
import type { KeySource } from '../../verify/index.js'
import { claimOverride, OverrideError, verifyOverride } from './verify-override.js'

/** What the control plane needs to open a request (body of `POST /admin/v1/approvals`). */
export interface OpenApprovalBody {
  tenant: string
  agent_id: string
  client_id: string
  tool: string
  params: Record<string, unknown>
  resource: string | null
  policy_id: string
  policy_version: string
  group: string
  require_console: boolean
  /** Redact obligations' pointers, masked in notifications. */
  mask: string[]
  /** Reverse-proxy calls: the forwarded request, which the override will bind. */
  request?: RequestBinding
}

/** The forwarded request of a reverse-proxy call, as approvals bind it (snake_case, wire form). */
export interface RequestBinding {
  method: string
  path: string
  query: Record<string, string | string[]>
  body_sha256?: string
}

/** The binding of a proxied call, or undefined for other entry points. */
export function requestBinding(http: HttpCall | null): RequestBinding | undefined {
  if (http === null) return undefined
  const b: RequestBinding = { method: http.method, path: http.path, query: http.query }
  if (http.bodySha256 !== undefined) b.body_sha256 = http.bodySha256
  return b
}

/** Opens approval requests on the control plane. */
export interface ApprovalOpener {
  open(body: OpenApprovalBody): Promise<ApprovalRef>
  /** The approval was used (its override claimed): an opener that remembers it must not hand it out again. */
  forget?(approvalId: string): void
}

const MAX_ANSWER_BYTES = 64 * 1024

/** Opener over HTTP with the gateway's control-plane client (gateway bearer token). */
export function httpApprovalOpener(client: Pick<ControlPlaneClient, 'url' | 'headers'>, timeoutMs = 5000): ApprovalOpener {
  return {
    async open(body) {
      let res: Response
      try {
        res = await fetch(client.url('/admin/v1/approvals'), {
          method: 'POST',
          headers: client.headers({ 'content-type': 'application/json', accept: 'application/json' }),
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
          redirect: 'error',
        })
      } catch (err) {
        throw new Unavailable('approval service unreachable', { cause: err })
      }
      const text = await res.text()
      let json: Record<string, unknown> = {}
      try {
        json = text.length <= MAX_ANSWER_BYTES ? (JSON.parse(text) as Record<string, unknown>) : {}
      } catch {
        json = {}
      }
      if (res.status === 429 || res.status === 400) {
        // The control plane's reason is meant for the agent (which cap, which limit).
        const description = typeof json.error_description === 'string' ? json.error_description.slice(0, 300) : 'approval request refused'
        if (res.status === 400) throw new InvalidRequest(description)
        throw new AegisError('rate_limited', description, { headers: { 'retry-after': res.headers.get('retry-after') ?? '60' } })
      }
      if (!res.ok || typeof json.id !== 'string' || typeof json.status_url !== 'string') {
        throw new Unavailable(`approval service answered ${res.status}`)
      }
      return { id: json.id, status_url: json.status_url }
    },
  }
}

/**
 * Remembers the request the control plane opened for an identical ask for
 * `ttlMs`, and lets concurrent identical asks share one call. The control
 * plane answers the same open request for the same agent, action and policy
 * anyway, so an agent (or a retry loop) repeating an approval_needed call
 * costs the gateway no round trip: without this, each such call is an HTTP
 * request to the control plane, which dominated mixed-decision load. A
 * request decided within the TTL is still served by its own status URL;
 * after a denial, a new request opens once the TTL has passed. Once an
 * approval's override has been used here, the same ask opens a new request
 * at once (a used override cannot serve a repeat of the call).
 */
export function cachingApprovalOpener(inner: ApprovalOpener, ttlMs = 2000, max = 10_000): ApprovalOpener {
  const keyOf = new Map<string, string>()
  const cache = new LRUCache<string, Promise<ApprovalRef>>({
    max,
    ttl: ttlMs,
    // Keeps keyOf as bounded as the cache: an entry leaving the cache (evicted, lapsed, forgotten) leaves the index too.
    dispose: (pending, key) => {
      pending.then(
        (ref) => {
          if (keyOf.get(ref.id) === key) keyOf.delete(ref.id)
        },
        () => {},
      )
    },
  })
  return {
    open(body) {
      const key = canonicalJson(body)
      const hit = cache.get(key)
      if (hit) return hit
      const pending = inner.open(body)
      cache.set(key, pending)
      pending.then(
        (ref) => {
          if (cache.get(key) === pending) keyOf.set(ref.id, key)
        },
        // Refusals (caps, outages) are never remembered: the next ask asks again.
        () => {
          if (cache.get(key) === pending) cache.delete(key)
        },
      )
      return pending
    },
    forget(approvalId) {
      const key = keyOf.get(approvalId)
      if (key !== undefined) cache.delete(key)
      keyOf.delete(approvalId)
    },
  }
}

export interface GatewayApprovalHookDeps {
  config: Pick<AegisConfig, 'issuer' | 'audience' | 'tokens' | 'keys'>
  clock: Clock
  logger: Logger
  metrics: Metrics
  replay: ReplayCache
  /** The gateway's JWKS client (`deps.verifier.jwks`). */
  keys: KeySource
  decisions: DecisionSink
  gatewayId: string
  opener: ApprovalOpener
  /** Approver group when a policy names none. Default `default`. */
  defaultGroup?: string
}

/** The hook to put in GatewayDeps.approvals. */
export function createApprovalHook(deps: GatewayApprovalHookDeps): ApprovalHook {
  const refuse = (ctx: ApprovalContext, err: OverrideError): AegisError => {
    const f = ctx.token.facts
    const event: GatewayAuditEvent = {
      type: err.reason === 'replayed' ? 'token.replayed' : 'token.refused',
      ts: deps.clock.now(),
      gateway_id: deps.gatewayId,
      mode: ctx.mode ?? 'authorize',
      tenant: f.tenant,
      agent_id: f.agentId,
      client_id: f.clientId,
      jti: f.jti,
      tool: ctx.tool,
      resource: ctx.resource,
      error: `override refused: ${err.message}`,
      policy_version: ctx.result.policyVersion,
    }
    deps.decisions.record(event)
    if (err.reason === 'replayed') deps.metrics.replayAttempts.inc()
    if (err.reason === 'unavailable') return new Unavailable(err.message)
    return new AegisError('invalid_token', err.message, { headers: { 'www-authenticate': wwwAuthenticate('invalid_token', err.message) } })
  }

  return {
    async resolve(ctx: ApprovalContext): Promise<ApprovalResolution | null> {
      const f = ctx.token.facts
      if (ctx.override !== null) {
        try {
          let paramsHash: string
          let requestHash: string | null
          try {
            paramsHash = canonicalHash(ctx.params)
            const binding = requestBinding(ctx.http)
            requestHash = binding === undefined ? null : canonicalHash(binding)
          } catch {
            throw new OverrideError('binding', 'override token was approved for a different call')
          }
          const v = await verifyOverride(ctx.override, {
            keys: deps.keys,
            issuer: deps.config.issuer,
            audience: deps.config.audience,
            clockSkewSeconds: deps.config.tokens.clockSkewSeconds,
            maxTokenBytes: deps.config.tokens.maxTokenBytes,
            ed25519: deps.config.keys.ed25519,
            now: deps.clock.now(),
            expected: {
              agentId: f.agentId,
              tenant: f.tenant,
              tool: ctx.tool,
              paramsHash,
              policyVersion: ctx.result.policyVersion,
              resource: ctx.resource,
              requestHash,
            },
          })
          // Only after every other check: a refused override must not burn its jti.
          await claimOverride(deps.replay, v)
          deps.opener.forget?.(v.approvalId)
          return { kind: 'overridden', reason: `approved by a human (approval ${v.approvalId}; one-time override used)` }
        } catch (err) {
          if (err instanceof OverrideError) throw refuse(ctx, err)
          throw err
        }
      }
      const r = ctx.result
      const request = requestBinding(ctx.http)
      const ref = await deps.opener.open({
        tenant: f.tenant,
        agent_id: f.agentId,
        client_id: f.clientId,
        tool: ctx.tool,
        params: ctx.params,
        resource: ctx.resource,
        policy_id: r.policyIds[0] ?? '',
        policy_version: r.policyVersion,
        group: r.approvalGroup ?? deps.defaultGroup ?? 'default',
        require_console: r.requireConsole === true,
        // What the approved call will redact is what approvers must not see either.
        mask: (r.approved ?? r).obligations.filter((o) => o.type === 'redact').map((o) => o.path),
        ...(request !== undefined ? { request } : {}),
      })
      return { kind: 'pending', approval: ref }
    },
    forget(approvalId) {
      deps.opener.forget?.(approvalId)
    },
  }
}

/**
 * The hook built from a gateway's own dependencies: its JWKS client (the
 * same keys as access tokens), replay cache, decision sink and control-plane
 * client. For gateway/app.ts: `deps.approvals = gatewayApprovalHook(deps, client)`.
 */
export function gatewayApprovalHook(
  deps: Pick<GatewayDeps, 'config' | 'clock' | 'logger' | 'metrics' | 'replay' | 'verifier' | 'decisions' | 'gatewayId'>,
  client: Pick<ControlPlaneClient, 'url' | 'headers'>,
): ApprovalHook {
  return createApprovalHook({
    config: deps.config,
    clock: deps.clock,
    logger: deps.logger,
    metrics: deps.metrics,
    replay: deps.replay,
    keys: deps.verifier.jwks,
    decisions: deps.decisions,
    gatewayId: deps.gatewayId,
    opener: cachingApprovalOpener(httpApprovalOpener(client)),
  })
}
