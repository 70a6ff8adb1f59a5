import { AegisError, Unavailable } from '../../../errors.js'
import type { GatewayDeps } from '../../deps.js'
import type { VerifiedManifest } from '../../manifests.js'
import { checkDenyList, enforceSenderConstraint, type SenderSource } from '../../pipeline/index.js'
import type { TokenView } from '../../pipeline/token-view.js'
import { needsKeys, verifyFailure, verifyToken, viewOf } from '../../pipeline/verify-token.js'

const MISSING_TOKEN = new AegisError('invalid_token', 'a bearer token is required')

/**
 * Steps 1–3 of the decision pipeline (verifyToken → checkDenyList →
 * enforceSenderConstraint), for MCP messages that are not tool calls
 * (initialize, ping, tools/list, notifications, the GET stream, DELETE): the
 * agent's token must be as valid for them as for a call, but there is no
 * action to decide. The same step functions as the pipeline, not a copy;
 * refusals are recorded as `token.refused` like the pipeline's.
 */
export function authenticate(
  deps: GatewayDeps,
  token: string | undefined,
  tool: string,
  resource: string,
  source: SenderSource,
): TokenView | Promise<TokenView> {
  let view: TokenView
  try {
    if (token === undefined) throw MISSING_TOKEN
    view = verifyToken(deps, token)
  } catch (err) {
    if (token !== undefined && needsKeys(err)) return verifySlowly(deps, token, tool, resource, source)
    throw refused(deps, null, verifyFailure(err), tool, resource)
  }
  return afterVerify(deps, view, tool, resource, source)
}

async function verifySlowly(deps: GatewayDeps, token: string, tool: string, resource: string, source: SenderSource): Promise<TokenView> {
  let view: TokenView
  try {
    view = viewOf(deps, await deps.verifier.verify(token))
  } catch (err) {
    throw refused(deps, null, verifyFailure(err), tool, resource)
  }
  return afterVerify(deps, view, tool, resource, source)
}

function afterVerify(deps: GatewayDeps, view: TokenView, tool: string, resource: string, source: SenderSource): TokenView | Promise<TokenView> {
  let proof: void | Promise<void>
  try {
    checkDenyList(deps, view)
    proof = enforceSenderConstraint(deps, view, source)
  } catch (err) {
    throw refused(deps, view, err, tool, resource)
  }
  if (proof instanceof Promise)
    return proof.then(
      () => view,
      (err: unknown) => {
        throw refused(deps, view, err, tool, resource)
      },
    )
  return view
}

/** The token's capability manifest (fetched once per hash, then cached by the gateway). */
export function manifestOf(deps: GatewayDeps, view: TokenView): VerifiedManifest | Promise<VerifiedManifest> {
  const m = deps.manifests.get(view.capabilityHash)
  if (m !== undefined) return m
  return deps.manifests.load(view.capabilityHash).catch((err: unknown) => {
    throw err instanceof AegisError ? err : new Unavailable('capability manifest unavailable', { cause: err })
  })
}

function refused(deps: GatewayDeps, view: TokenView | null, err: unknown, tool: string, resource: string): unknown {
  const f = view?.facts
  deps.decisions.record({
    type: 'token.refused',
    ts: deps.clock.now(),
    gateway_id: deps.gatewayId,
    mode: 'mcp',
    tenant: f?.tenant ?? null,
    agent_id: f?.agentId ?? null,
    client_id: f?.clientId ?? null,
    jti: f?.jti ?? null,
    tool,
    resource,
    error: err instanceof AegisError ? err.message : 'internal error',
  })
  return err
}
