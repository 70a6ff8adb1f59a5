/**
 * The decision steps (docs/reference.md "Gateway" steps 1–6) as the pipeline runs
 * them: each adapts one check of this folder to a `Call`, and says which of
 * its failures are refusals of the token (audited by `refused`) and which
 * are outages (503).
 */
import { AegisError } from '../../errors.js'
import type { ApprovalResolution } from '../deps.js'
import { refused, unavailable, auditEvent } from './audit.js'
import type { Call } from './call.js'
import { checkDenyList } from './check-deny-list.js'
import { assessBackends, checkReplay, needsReplayClaim, REPLAY_CLAIM_FAILED } from './check-replay.js'
import { evaluatePolicy } from './evaluate-policy.js'
import { resolveApproval } from './resolve-approval.js'
import { enforceSenderConstraint } from './sender-constraint.js'
import { invalidToken, needsKeys, verifyFailure, verifyToken, viewOf } from './verify-token.js'

const MISSING_TOKEN = new AegisError('invalid_token', 'a bearer token is required')
const REPLAYED = 'token replayed (single-use jti already used)'

/**
 * Step 1: the bearer token, verified (a verified-token cache hit for a
 * reused token). Waits only when the token's `kid` is not known yet.
 */
export function verifyBearer(call: Call): void | Promise<void> {
  const token = call.req.token
  if (token === undefined) throw refused(call, null, MISSING_TOKEN)
  try {
    call.view = verifyToken(call.deps, token)
  } catch (err) {
    if (needsKeys(err)) return verifyWithFetchedKeys(call, token)
    throw refused(call, null, verifyFailure(err))
  }
}

async function verifyWithFetchedKeys(call: Call, token: string): Promise<void> {
  try {
    call.view = viewOf(call.deps, await call.deps.verifier.verify(token))
  } catch (err) {
    throw refused(call, null, verifyFailure(err))
  }
}

/** Step 2: the deny list and the agent's current capability manifest. */
export function refuseRevoked(call: Call): void {
  try {
    checkDenyList(call.deps, call.view)
  } catch (err) {
    throw refused(call, call.view, err)
  }
}

/** Step 3: the token's `cnf` against the request; waits for a DPoP proof only. */
export function checkSenderBinding(call: Call): void | Promise<void> {
  let proof: void | Promise<void>
  try {
    proof = enforceSenderConstraint(call.deps, call.view, call.req.sender)
  } catch (err) {
    throw refused(call, call.view, err)
  }
  if (proof !== undefined)
    return proof.then(undefined, (err: unknown) => {
      throw refused(call, call.view, err)
    })
}

/**
 * The capability manifest the token was minted against (what step 4 checks
 * the tool against): held for good once fetched, so this waits only for the
 * first call with a new `capability_hash`.
 */
export function findManifest(call: Call): void | Promise<void> {
  const held = call.deps.manifests.get(call.view.capabilityHash)
  if (held === undefined) return fetchManifest(call)
  call.manifest = held
}

async function fetchManifest(call: Call): Promise<void> {
  try {
    call.manifest = await call.deps.manifests.load(call.view.capabilityHash)
  } catch (err) {
    throw refused(
      call,
      call.view,
      err instanceof AegisError ? err : new AegisError('temporarily_unavailable', 'capability manifest unavailable', { cause: err }),
    )
  }
}

/**
 * Step 4: the policy's decision and obligations. Pure, so it runs before the
 * replay claim: it says whether the action is high-risk (and so whether the
 * jti is claimed) and whether the decision is enforced.
 */
export function evaluateCall(call: Call): void {
  const req = call.req
  const nowMs = call.deps.clock.now()
  const ev = evaluatePolicy(call.deps, call.view, call.manifest, req, Math.floor(nowMs / 1000))
  call.nowMs = nowMs
  call.ev = ev
  call.enforced = !(req.dryRun || ev.shadow || call.deps.config.gateway.shadow)
  call.claim = needsReplayClaim(ev.result, req.dryRun)
}

/**
 * The freshness part of steps 2 and 5: what the call may do while the feed
 * or Redis is out (`assessBackends`).
 */
export function assessOutage(call: Call): void {
  const degraded = assessBackends(call.deps, call.req.tool, call.ev.result, call.nowMs, call.claim)
  call.degraded = degraded
  if (degraded !== null && degraded.outcome === 'closed') {
    // An outage is not a policy decision: 503 + Retry-After when enforced; a
    // dry run or shadow call reports what it would do, and uses up nothing.
    if (call.enforced) throw unavailable(call, degraded)
    call.claim = false
  }
}

/** Step 5: the jti recorded single-use, for actions the policy marks high-risk. */
export function claimReplay(call: Call): void | Promise<void> {
  if (call.claim) return claimOnce(call)
}

async function claimOnce(call: Call): Promise<void> {
  let first: boolean
  try {
    first = await checkReplay(call.deps, call.view)
  } catch (err) {
    call.deps.logger.warn({ err }, 'replay cache unreachable; failing closed')
    if (call.enforced) throw unavailable(call, REPLAY_CLAIM_FAILED)
    call.degraded = REPLAY_CLAIM_FAILED
    return
  }
  if (!first) {
    call.deps.metrics.replayAttempts.inc()
    call.deps.decisions.record(auditEvent(call, 'token.replayed', call.view, REPLAYED, call.enforced))
    if (call.enforced) throw invalidToken(REPLAYED)
  }
}

/**
 * Step 6: an enforced `approval_needed` goes to the approval hook (opens an
 * approval request, or accepts a one-time override for exactly this call).
 * Waits only when the hook does.
 */
export function askApproval(call: Call): void | Promise<void> {
  // A call settled by an outage is never enforced here (assessOutage and claimOnce threw otherwise).
  if (!call.enforced || call.ev.result.decision !== 'approval_needed') return
  const req = call.req
  const res = resolveApproval(call.deps.approvals, {
    token: call.view,
    tool: req.tool,
    params: req.params,
    resource: req.resource,
    http: req.http ?? null,
    result: call.ev.result,
    override: req.override,
    mode: req.mode,
  })
  if (res !== null && typeof (res as Promise<unknown>).then === 'function') {
    return (res as Promise<ApprovalResolution | null>).then((r) => {
      call.approval = r
    })
  }
  call.approval = res as ApprovalResolution | null
}
