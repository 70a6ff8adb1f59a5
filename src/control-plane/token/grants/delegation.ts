/**
 * RFC 8693 delegation: a token exchange with an `actor_token` (docs/delegation.md).
 *
 * - Agent to sub-agent: `subject_token` is an Aegis access token (the
 *   delegating agent's own, or one already delegated), `actor_token` the
 *   acting agent's own Aegis token. Allowed when the agent delegating now
 *   (the subject's current actor, else its agent) lists the actor in its
 *   registration's `delegates`. The result keeps `sub`/`agent_id`, nests the
 *   actor into `act`, and carries the scopes and tools of both tokens at most.
 * - On behalf of a person: `subject_token` is the person's token from an
 *   issuer the actor's tenant trusts with a `users` mapping; `sub` becomes the
 *   person, `act.sub` and `agent_id` the agent, and scopes and tools are no
 *   wider than the agent's and what the mapping gives that person.
 *
 * Every refusal about the tokens themselves (invalid, revoked, stale, another
 * tenant, not allowed to delegate, a loop, over the tenant's depth) is
 * `invalid_request`, as RFC 8693 §2.2.2 requires; a wider scope or tool list
 * is `invalid_scope` (RFC 6749 §5.2), an audience outside both `invalid_target`.
 */
import { decodeJwt, type JWTPayload } from 'jose'
import { AegisError, InvalidRequest, Unavailable } from '../../../errors.js'
import { buildManifest, capabilityHash, type CapabilityManifest } from '../../../lib/capability.js'
import {
  DEFAULT_DELEGATION_DEPTH,
  DelegationError,
  MAX_USER_RESOURCES,
  actClaim,
  intersectManifests,
  readDelegation,
  type DelegationChain,
  type DelegationClaim,
} from '../../../lib/delegation.js'
import type { TokenFacts } from '../../../store/deny-list.js'
import type { Agent, Tenant, TrustedIssuer, UserMapping } from '../../../store/types.js'
import type { ControlPlaneDeps } from '../../deps.js'
import { findRevocationOfAny } from '../../revocation/index.js'
import type { IssueRequest } from '../issue.js'
import { LocalTokenVerifier, type VerifiedOwnToken } from '../local-verify.js'
import { single, type FormBody } from '../params.js'
import { allowedAudiences } from '../request-scope.js'
import { MAX_ENTRIES_PER_TENANT, TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT, verifyWith } from './token-exchange.js'
import type { GrantContext } from './types.js'

const MAX_REQUESTED_TOOLS = 1000
const MAX_USER_RESOURCES_JSON = 2048

const verifiers = new WeakMap<ControlPlaneDeps, LocalTokenVerifier>()

function ownVerifier(deps: ControlPlaneDeps): LocalTokenVerifier {
  let v = verifiers.get(deps)
  if (!v) {
    v = new LocalTokenVerifier(deps)
    verifiers.set(deps, v)
  }
  return v
}

interface OwnToken {
  token: VerifiedOwnToken
  chain: DelegationChain | null
}

async function readOwn(deps: ControlPlaneDeps, raw: string, name: 'subject_token' | 'actor_token'): Promise<OwnToken> {
  const token = await ownVerifier(deps).verify(raw)
  if (!token) throw new InvalidRequest(`${name} is not a valid, unexpired access token of this issuer`)
  try {
    return { token, chain: readDelegation(token.claims) }
  } catch (err) {
    if (err instanceof DelegationError) throw new InvalidRequest(`${name}: ${err.message}`)
    throw err
  }
}

/**
 * A sender-constrained token in the body proves nothing by itself: whoever
 * presents it must show its key in this request (the client certificate or
 * DPoP proof the token endpoint verified), as a resource server would ask.
 */
function checkHolder(ctx: GrantContext, t: VerifiedOwnToken, name: string): void {
  const cnf = t.claims.cnf
  if (cnf === undefined) return
  const proved = ctx.senderCnf ?? null
  const jkt = cnf.jkt
  const x5t = cnf['x5t#S256']
  const ok = proved !== null && (jkt === undefined || proved.jkt === jkt) && (x5t === undefined || proved['x5t#S256'] === x5t)
  if (!ok) throw new InvalidRequest(`${name} is sender-constrained: present its key (DPoP proof or client certificate) with the exchange`)
}

function factsOf(t: VerifiedOwnToken): TokenFacts {
  const c = t.claims
  return { jti: c.jti, tenant: c.tenant, agentId: c.agent_id, clientId: c.client_id, kid: t.kid, iat: c.iat }
}

/**
 * Refuses when either token, any agent of the chain or any token the chain
 * was exchanged from (`from`) is revoked (the store's entries in force, as
 * introspection reads them).
 */
async function refuseRevoked(
  deps: ControlPlaneDeps,
  tokens: VerifiedOwnToken[],
  tenant: string,
  agents: readonly string[],
  iat: number,
  from: readonly string[] = [],
): Promise<void> {
  const facts = [
    ...tokens.map(factsOf),
    ...agents.map((agentId): TokenFacts => ({ jti: '', tenant, agentId, clientId: '', kid: '', iat })),
    ...from.map((jti): TokenFacts => ({ jti, tenant, agentId: '', clientId: '', kid: '', iat })),
  ]
  if (await findRevocationOfAny(deps, facts)) throw new InvalidRequest('a token or an agent of the delegation chain is revoked')
}

function scopesOf(t: VerifiedOwnToken): string[] {
  return t.claims.scope.split(' ').filter((s) => s !== '')
}

function audOf(claims: { aud: string | readonly string[] }): string[] {
  return typeof claims.aud === 'string' ? [claims.aud] : [...claims.aud]
}

function asManifest(body: unknown): CapabilityManifest | null {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return null
  const m = body as Record<string, unknown>
  if (!Array.isArray(m.capabilities) || !m.capabilities.every((c) => typeof c === 'string')) return null
  const out: CapabilityManifest = { capabilities: m.capabilities as string[] }
  if (m.schemas !== undefined && m.schemas !== null && typeof m.schemas === 'object') out.schemas = m.schemas as Record<string, unknown>
  return out
}

/** The manifest a token was minted against (content-addressed, so it is exactly what the hash names). */
async function manifestOf(deps: ControlPlaneDeps, hash: string): Promise<CapabilityManifest> {
  const m = asManifest(await deps.store.manifests.get(hash))
  if (!m || capabilityHash(m) !== hash) throw new InvalidRequest("the subject token's capability manifest is unknown")
  return m
}

/** A space-separated list parameter, deduplicated; undefined when absent. */
function listParam(body: FormBody, name: string, max: number): string[] | undefined {
  const raw = single(body, name, 64 * max)
  if (raw === undefined) return undefined
  const values = [...new Set(raw.split(' ').filter((s) => s !== ''))]
  if (values.length > max) throw new InvalidRequest(`at most ${max} ${name} values`)
  return values
}

/** Granted scopes: the requested ones when all are held, else every held one. */
function narrowScope(held: readonly string[], body: FormBody): string[] {
  const requested = listParam(body, 'scope', 100)
  if (requested === undefined || requested.length === 0) return [...held]
  const set = new Set(held)
  for (const s of requested) if (!set.has(s)) throw new AegisError('invalid_scope', 'the requested scope is wider than the delegating token and the actor hold')
  return requested
}

/** The requested tools (`capabilities`, an Aegis extension), each held by the intersection, or undefined for all of it. */
function requestedTools(body: FormBody, held: readonly string[]): Set<string> | undefined {
  const requested = listParam(body, 'capabilities', MAX_REQUESTED_TOOLS)
  if (requested === undefined || requested.length === 0) return undefined
  const set = new Set(held)
  for (const t of requested)
    if (!set.has(t)) throw new AegisError('invalid_scope', 'a requested capability is not held by the delegating token and the actor alike')
  return new Set(requested)
}

function narrowAudiences(deps: ControlPlaneDeps, subjectAud: readonly string[], actor: Agent, body: FormBody): string[] {
  const mayHave = allowedAudiences(actor, deps.config)
  const both = subjectAud.filter((a) => mayHave.includes(a))
  const requested = [...new Set([...(asList(body.audience) ?? []), ...(asList(body.resource) ?? [])])]
  if (requested.length > 10) throw new AegisError('invalid_target', 'at most 10 audiences')
  if (requested.length === 0) {
    if (both.length === 0) throw new AegisError('invalid_target', 'the delegating token and the actor share no audience')
    return both
  }
  for (const a of requested)
    if (!both.includes(a)) throw new AegisError('invalid_target', 'the requested audience is not held by the delegating token and the actor')
  return requested
}

function asList(v: string | string[] | undefined): string[] | undefined {
  if (v === undefined) return undefined
  return (Array.isArray(v) ? v : [v]).filter((x) => x !== '')
}

/** Asked lifetime (`ttl`, seconds, an Aegis extension): bounded again by the issuer. */
function askedTtl(body: FormBody): number | undefined {
  const raw = single(body, 'ttl', 8)
  if (raw === undefined) return undefined
  if (!/^[1-9][0-9]{0,4}$/.test(raw)) throw new InvalidRequest('ttl must be a whole number of seconds')
  return Number(raw)
}

/** The client, when one authenticated, must be one of the two parties of the hop. */
function checkClient(ctx: GrantContext, tenant: string, parties: readonly string[]): void {
  const c = ctx.client
  if (c && (c.tenant.id !== tenant || !parties.includes(c.agent.agentId)))
    throw new InvalidRequest('the authenticated client is neither the delegating agent nor the actor')
}

interface Actor {
  own: OwnToken
  tenant: Tenant
  agent: Agent
  manifest: CapabilityManifest
}

async function readActor(ctx: GrantContext, raw: string): Promise<Actor> {
  const { deps, dir } = ctx
  const type = single(ctx.body, 'actor_token_type', 256)
  if (type === undefined) throw new InvalidRequest('actor_token_type is required with actor_token')
  if (type !== TOKEN_TYPE_ACCESS_TOKEN) throw new InvalidRequest('actor_token_type must be urn:ietf:params:oauth:token-type:access_token')
  const own = await readOwn(deps, raw, 'actor_token')
  checkHolder(ctx, own.token, 'actor_token')
  if (own.chain !== null) throw new InvalidRequest("actor_token must be the acting agent's own token, not a delegated one")
  const c = own.token.claims
  const tenant = await dir.tenant(c.tenant)
  const agent = await dir.agent(c.tenant, c.agent_id)
  if (!tenant || !agent) throw new InvalidRequest('the actor is not a registered agent')
  if (c.capability_hash !== agent.capabilityHash) throw new InvalidRequest('actor_token was minted against an older capability manifest of the actor')
  return { own, tenant, agent, manifest: buildManifest(agent.capabilities, agent.schemas) }
}

function depthLimit(tenant: Tenant): number {
  return tenant.maxDelegationDepth ?? DEFAULT_DELEGATION_DEPTH
}

/** Handles a token exchange that names an actor_token. */
export async function prepareDelegation(ctx: GrantContext, subjectRaw: string, subjectType: string, actorRaw: string): Promise<IssueRequest> {
  const { deps } = ctx
  if (subjectType !== TOKEN_TYPE_ACCESS_TOKEN && subjectType !== TOKEN_TYPE_JWT && subjectType !== TOKEN_TYPE_ID_TOKEN)
    throw new InvalidRequest('subject_token_type must be an access_token, jwt or id_token type')
  let unverified: JWTPayload
  try {
    unverified = decodeJwt(subjectRaw)
  } catch {
    throw new InvalidRequest('subject_token is not a JWT')
  }
  const actor = await readActor(ctx, actorRaw)
  if (unverified.iss === deps.config.issuer) {
    if (subjectType !== TOKEN_TYPE_ACCESS_TOKEN) throw new InvalidRequest('an Aegis subject_token has type urn:ietf:params:oauth:token-type:access_token')
    const subject = await readOwn(deps, subjectRaw, 'subject_token')
    checkHolder(ctx, subject.token, 'subject_token')
    return agentHop(ctx, subject, actor)
  }
  return userHop(ctx, subjectRaw, unverified, actor)
}

/** One more hop on an Aegis token (agent → sub-agent, or an agent already acting for a person → sub-agent). */
async function agentHop(ctx: GrantContext, subject: OwnToken, actor: Actor): Promise<IssueRequest> {
  const { deps, dir, body } = ctx
  const s = subject.token.claims
  const tenantId = s.tenant
  if (actor.tenant.id !== tenantId) throw new InvalidRequest('actor_token belongs to another tenant than subject_token')
  const before: DelegationChain = subject.chain ?? {
    chain: [s.agent_id],
    hashes: [s.capability_hash ?? ''],
    depth: 0,
    from: [],
    user: null,
    userIssuer: null,
    userResources: [],
  }
  const actorId = actor.agent.agentId
  const delegatorId = before.chain[before.chain.length - 1]!
  checkClient(ctx, tenantId, [delegatorId, actorId])
  if (before.chain.includes(actorId)) throw new InvalidRequest('the actor is already in the delegation chain (a loop)')
  const limit = depthLimit(actor.tenant)
  if (before.depth + 1 > limit) throw new InvalidRequest(`the delegation chain would exceed this tenant's depth limit of ${limit}`)

  // Every agent of the chain must still exist with the manifest it had when the chain reached it.
  const agents: Agent[] = []
  for (const [i, id] of before.chain.entries()) {
    const a = await dir.agent(tenantId, id)
    if (!a || a.capabilityHash !== before.hashes[i]) throw new InvalidRequest(`agent ${id} of the chain no longer exists or changed its capabilities`)
    agents.push(a)
  }
  const delegator = agents[agents.length - 1]!
  if (!(delegator.delegates ?? []).includes(actorId)) throw new InvalidRequest(`agent ${delegatorId} may not delegate to ${actorId} (not in its delegates)`)
  await refuseRevoked(deps, [subject.token, actor.own.token], tenantId, [...before.chain, actorId], s.iat, before.from)

  const subjectManifest = await manifestOf(deps, s.capability_hash ?? '')
  const all = intersectManifests(subjectManifest, actor.manifest)
  const manifest = intersectManifests(subjectManifest, actor.manifest, requestedTools(body, all.capabilities))
  const actorScopes = new Set(scopesOf(actor.own.token))
  const scope = narrowScope(
    scopesOf(subject.token).filter((x) => actorScopes.has(x)),
    body,
  )
  const audiences = narrowAudiences(deps, audOf(s), actor.agent, body)
  const chain = [...before.chain, actorId]
  const actors = before.user === null ? chain.slice(1) : chain
  const delegation: DelegationClaim = {
    hashes: [...before.hashes, actor.agent.capabilityHash],
    from: [...before.from, s.jti, actor.own.token.claims.jti],
  }
  if (before.user !== null) {
    delegation.user = before.user
    if (before.userIssuer !== null) delegation.user_iss = before.userIssuer
    if (before.userResources.length > 0) delegation.user_resources = [...before.userResources]
  }
  return finish(ctx, {
    tenant: actor.tenant,
    principalAgent: agents[0]!,
    actor,
    subjectExp: s.exp,
    subjectSub: before.user ?? undefined,
    manifest,
    scope,
    audiences,
    chain,
    actors,
    delegation,
    auditData: { subject_jti: s.jti },
  })
}

/** The grants a person's token gets under a trusted issuer's `users` mapping. */
function userGrants(m: UserMapping, payload: JWTPayload): { scopes: Set<string>; tools: Set<string> } | null {
  const raw = payload[m.claim]
  const values = new Set(typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.filter((v): v is string => typeof v === 'string').slice(0, 1000) : [])
  const matched = m.grants.filter((g) => values.has(g.value))
  if (matched.length === 0) return null
  return { scopes: new Set(matched.flatMap((g) => g.scopes)), tools: new Set(matched.flatMap((g) => g.capabilities)) }
}

function userResources(m: UserMapping, payload: JWTPayload): string[] {
  if (!m.resourcesClaim) return []
  const raw = payload[m.resourcesClaim]
  const values = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : []
  if (values.length > MAX_USER_RESOURCES || !values.every((v) => typeof v === 'string' && v.length > 0 && v.length <= 256))
    throw new InvalidRequest(`the person's ${m.resourcesClaim} claim must be at most ${MAX_USER_RESOURCES} strings of at most 256 characters`)
  const out = [...new Set(values as string[])]
  // They travel in every token of the chain: a token must stay far below the verifiers' size bound (tokens.maxTokenBytes).
  if (JSON.stringify(out).length > MAX_USER_RESOURCES_JSON)
    throw new InvalidRequest(`the person's ${m.resourcesClaim} claim is longer than ${MAX_USER_RESOURCES_JSON} characters of JSON`)
  return out
}

/** First hop on behalf of a person: their token from a trusted issuer of the actor's tenant. */
async function userHop(ctx: GrantContext, raw: string, unverified: JWTPayload, actor: Actor): Promise<IssueRequest> {
  const { deps, body } = ctx
  const tenantId = actor.tenant.id
  checkClient(ctx, tenantId, [actor.agent.agentId])
  const iss = unverified.iss
  if (typeof iss !== 'string' || iss.length === 0 || iss.length > 512) throw new InvalidRequest('subject_token has no issuer')
  const aud = new Set(typeof unverified.aud === 'string' ? [unverified.aud] : Array.isArray(unverified.aud) ? unverified.aud : [])
  const entries: TrustedIssuer[] = (await deps.store.trustedIssuers.list(tenantId))
    .filter((t) => t.issuer === iss && t.users && aud.has(t.audience))
    .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
    .slice(0, MAX_ENTRIES_PER_TENANT)
  if (entries.length === 0) throw new InvalidRequest("the subject token's issuer is not trusted for people in the actor's tenant")
  let verified: { entry: TrustedIssuer; payload: JWTPayload } | null = null
  let unavailable = false
  for (const entry of entries) {
    const r = await verifyWith(deps, entry, raw)
    if (r === 'unavailable') unavailable = true
    else if (r !== 'invalid') {
      verified = { entry, payload: r.payload }
      break
    }
  }
  if (!verified) {
    if (unavailable) throw new Unavailable("the subject token issuer's keys could not be fetched; retry later")
    throw new InvalidRequest('subject_token is invalid, expired or not for this audience')
  }
  const { entry, payload } = verified
  const sub = payload.sub
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 256) throw new InvalidRequest('subject_token has no usable sub')
  const agents = entry.users!.agents
  if (agents && !agents.includes(actor.agent.agentId)) throw new InvalidRequest('this agent may not act for people of this issuer')
  const grants = userGrants(entry.users!, payload)
  if (!grants) throw new InvalidRequest('the tenant maps nothing to this person')
  const resources = userResources(entry.users!, payload)
  if (1 > depthLimit(actor.tenant)) throw new InvalidRequest("the delegation chain would exceed this tenant's depth limit")
  await refuseRevoked(deps, [actor.own.token], tenantId, [actor.agent.agentId], actor.own.token.claims.iat)

  const userManifest: CapabilityManifest = { capabilities: actor.manifest.capabilities.filter((t) => grants.tools.has(t)) }
  const all = intersectManifests(actor.manifest, userManifest)
  const manifest = intersectManifests(actor.manifest, userManifest, requestedTools(body, all.capabilities))
  const scope = narrowScope(
    scopesOf(actor.own.token).filter((x) => grants.scopes.has(x)),
    body,
  )
  const audiences = narrowAudiences(deps, audOf(actor.own.token.claims), actor.agent, body)
  // The person's token is another issuer's to revoke; the actor's own token is ours.
  const delegation: DelegationClaim = { hashes: [actor.agent.capabilityHash], from: [actor.own.token.claims.jti], user: sub, user_iss: iss }
  if (resources.length > 0) delegation.user_resources = resources
  return finish(ctx, {
    tenant: actor.tenant,
    principalAgent: actor.agent,
    actor,
    subjectExp: payload.exp as number,
    subjectSub: sub,
    manifest,
    scope,
    audiences,
    chain: [actor.agent.agentId],
    actors: [actor.agent.agentId],
    delegation,
    auditData: { subject_issuer: iss, trusted_issuer_id: entry.id },
  })
}

interface Hop {
  tenant: Tenant
  /** The token's `agent_id`: the chain's first agent. */
  principalAgent: Agent
  actor: Actor
  subjectExp: number
  /** `sub` when a person delegated. */
  subjectSub: string | undefined
  manifest: CapabilityManifest
  scope: string[]
  audiences: string[]
  chain: string[]
  /** The `act` levels, innermost first. */
  actors: string[]
  delegation: DelegationClaim
  auditData: Record<string, unknown>
}

async function finish(ctx: GrantContext, h: Hop): Promise<IssueRequest> {
  const { deps } = ctx
  const now = Math.floor(deps.clock.now() / 1000)
  const remaining = Math.min(h.subjectExp, h.actor.own.token.claims.exp) - now
  if (remaining <= 0) throw new InvalidRequest('subject_token or actor_token expired')
  const hash = capabilityHash(h.manifest)
  // The gateway fetches manifests by hash; the intersection must be there before a token names it (content-addressed, idempotent).
  await deps.store.manifests.put(hash, h.manifest)
  const req: IssueRequest = {
    tenant: h.tenant,
    agent: h.principalAgent,
    clientId: h.actor.agent.clientId,
    scope: h.scope,
    audiences: h.audiences,
    grant: TOKEN_EXCHANGE_GRANT,
    maxLifetimeSeconds: Math.min(remaining, h.actor.agent.maxTtlSeconds),
    issuedTokenType: TOKEN_TYPE_ACCESS_TOKEN,
    capabilityHash: hash,
    extraClaims: { act: actClaim(h.actors), delegation: h.delegation },
    auditData: {
      ...h.auditData,
      actor_jti: h.actor.own.token.claims.jti,
      delegation: { chain: h.chain, depth: h.actors.length, ...(h.subjectSub !== undefined ? { user: h.subjectSub } : {}) },
      capabilities: h.manifest.capabilities,
    },
  }
  const ttl = askedTtl(ctx.body)
  if (ttl !== undefined) req.lifetimeSeconds = ttl
  if (h.subjectSub !== undefined) req.subject = h.subjectSub
  return req
}
