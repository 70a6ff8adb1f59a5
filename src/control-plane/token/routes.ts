/**
 * The OAuth endpoints: `POST /oauth2/token` (RFC 6749), `/oauth2/revoke`
 * (RFC 7009) and `/oauth2/introspect` (RFC 7662). Registered at the root.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AegisError, InvalidRequest } from '../../errors.js'
import { authenticateAdmin, type AdminPrincipal } from '../../http/admin-auth.js'
import { sendError } from '../../http/error-handler.js'
import { Redis } from 'ioredis'
import type { ControlPlaneDeps } from '../deps.js'
import { kpiBook } from '../admin/kpis.js'
import { findRevocationOfAny, recordRevocation } from '../revocation/service.js'
import {
  ClientAuthFailure,
  createClientAuthenticators,
  readClientClaim,
  refineClientClaim,
  type AuthPurpose,
  type AuthenticatedClient,
  type ClientAuthenticators,
  type ClientClaim,
} from './client-auth/index.js'
import { directoryFor } from './directory.js'
import { clientCertificateOf, commitBinding, readSenderBinding } from './dpop-sender.js'
import { defaultGrants, type GrantHandler } from './grants/index.js'
import { TokenIssuer } from './issue.js'
import { LocalTokenVerifier } from './local-verify.js'
import { readForm, single, type FormBody } from './params.js'
import type { Revocation } from '../../store/types.js'
import type { TokenFacts } from '../../store/deny-list.js'
import { readDelegation, type DelegationChain } from '../../lib/delegation.js'
import { MemoryRateLimiter, RedisRateLimiter, type RateLimiter, type RateVerdict } from './rate-limit.js'

export interface TokenRoutesOptions {
  /** Grant handlers by grant_type (default: client_credentials). */
  grants?: Map<string, GrantHandler>
  /** Rate limiter (default: in-process, or Redis when config.redisUrl). */
  rateLimiter?: RateLimiter
}

/** The endpoints' shared machinery, also used by the metadata document. */
export interface TokenService {
  grants: Map<string, GrantHandler>
  authenticators: ClientAuthenticators
  issuer: TokenIssuer
  verifier: LocalTokenVerifier
}

const services = new WeakMap<ControlPlaneDeps, TokenService>()

/** The token service of a control plane (one per deps object). */
export function tokenService(deps: ControlPlaneDeps, grants?: Map<string, GrantHandler>): TokenService {
  let s = services.get(deps)
  if (!s) {
    const dir = directoryFor(deps)
    s = {
      grants: grants ?? defaultGrants(),
      authenticators: createClientAuthenticators(deps, dir),
      issuer: new TokenIssuer(deps, dir, kpiBook(deps)),
      verifier: new LocalTokenVerifier(deps),
    }
    services.set(deps, s)
  }
  return s
}

function noStore(reply: FastifyReply): void {
  reply.header('cache-control', 'no-store')
  reply.header('pragma', 'no-cache')
}

// Fastify answers 415 for non-form media types before the handler runs; RFC 6749 §5.2 wants invalid_request.
function oauthErrorHandler(error: Error, request: FastifyRequest, reply: FastifyReply): FastifyReply | undefined {
  const code = (error as { code?: string }).code
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    noStore(reply)
    return sendError(reply, new InvalidRequest('the request body must be application/x-www-form-urlencoded'), request)
  }
  throw error
}

function tooMany(v: RateVerdict): AegisError {
  return new AegisError('rate_limited', 'too many token requests; retry later', { headers: { 'retry-after': String(v.retryAfter) } })
}

/** Registers /oauth2/token, /oauth2/revoke and /oauth2/introspect. */
export async function tokenRoutes(app: FastifyInstance, deps: ControlPlaneDeps, opts: TokenRoutesOptions = {}): Promise<void> {
  const svc = tokenService(deps, opts.grants)
  const dir = directoryFor(deps)
  const { config } = deps
  let limiter = opts.rateLimiter
  if (!limiter) {
    if (config.redisUrl) {
      // No offline queue and a short timeout: with Redis down the limiter falls back at once instead of stalling issuance.
      const redis = new Redis(config.redisUrl, { enableOfflineQueue: false, commandTimeout: 250, maxRetriesPerRequest: 0 })
      redis.on('error', (err) => deps.logger.warn({ err: err.message }, 'rate-limit redis connection error'))
      let warned = 0
      limiter = new RedisRateLimiter(
        redis,
        config.rateLimit.windowSeconds * 1000,
        () => deps.clock.now(),
        '',
        (err) => {
          const now = Date.now()
          if (now - warned > 10_000) {
            warned = now
            deps.logger.warn({ err }, 'rate limiting in process while Redis is unreachable')
          }
        },
      )
    } else {
      limiter = new MemoryRateLimiter(config.rateLimit.windowSeconds * 1000, () => deps.clock.now())
    }
    const owned = limiter
    app.addHook('onClose', async () => {
      await owned.close()
    })
  }
  const rl = limiter

  /**
   * Records a failed authentication and rethrows it as invalid_client. Failures
   * are counted per claimed client id and address: past
   * rateLimit.authFailuresPerClientIp in a window they get 429 and no more
   * audit events. A correct credential never passes through here, so nobody
   * (not even a caller behind the same address) can lock a client out; the
   * per-client quota counts authenticated requests only. The audit event is
   * not awaited: the failure path must not wait on the audit log.
   */
  async function authFailed(err: ClientAuthFailure, claim: ClientClaim | null, request: FastifyRequest, reply: FastifyReply, endpoint: string): Promise<never> {
    deps.metrics.authFailures.inc({ reason: err.reason })
    const clientId = claim?.clientId ?? null
    const counted = rl.hit(`authfail:${request.ip}:${clientId ?? ''}`, config.rateLimit.authFailuresPerClientIp)
    const verdict = counted instanceof Promise ? await counted : counted
    if (!verdict.ok) throw tooMany(verdict)
    deps.audit
      .append({
        type: 'auth.failed',
        tenant: err.tenant,
        actor: clientId ? `client:${clientId}` : 'anonymous',
        subject: clientId,
        data: { reason: err.reason, method: claim?.method ?? null, endpoint, ip: request.ip },
      })
      .catch((e: unknown) => deps.logger.error({ err: e }, 'auth.failed audit event not written'))
    if (
      claim?.method === 'client_secret_basic' ||
      (claim === null && typeof request.headers.authorization === 'string' && /^basic /i.test(request.headers.authorization))
    ) {
      reply.header('www-authenticate', 'Basic realm="aegis", charset="UTF-8"')
    }
    throw err
  }

  /** The per-client quota, counted once the client is known (authenticated, or the agent a token exchange maps to). */
  async function limitClient(clientId: string): Promise<void> {
    const r = rl.hit(`client:${clientId}`, config.rateLimit.perClient)
    const v = r instanceof Promise ? await r : r
    if (!v.ok) throw tooMany(v)
  }

  /**
   * The agent, client or tenant revocation in force for what is being
   * issued, or null: one in-memory lookup (StandingRevocations), no store
   * round trip.
   */
  function standingRevocation(
    tenant: string,
    agent: { agentId: string; clientId: string },
    clientIds: readonly string[],
  ): Revocation | null | Promise<Revocation | null> {
    return dir.standing.match({ tenant, agentId: agent.agentId, clientIds: [...clientIds, agent.clientId] })
  }

  /** Reads and verifies the client of a revocation/introspection request. */
  async function authenticateCaller(request: FastifyRequest, reply: FastifyReply, body: FormBody, purpose: AuthPurpose): Promise<AuthenticatedClient> {
    let claim: ClientClaim | null = null
    try {
      claim = refineClientClaim(readClientClaim(request.headers.authorization, body), body, clientCertificateOf(deps, request))
      if (!claim) throw new ClientAuthFailure('missing')
      return await svc.authenticators.authenticate(claim, purpose)
    } catch (err) {
      if (err instanceof ClientAuthFailure) await authFailed(err, claim, request, reply, purpose)
      throw err
    }
  }

  /** Per-address limit; synchronous with the in-process limiter (no await on the hot path). */
  function limitIp(request: FastifyRequest): Promise<void> | undefined {
    const r = rl.hit(`ip:${request.ip}`, config.rateLimit.perIp)
    if (r instanceof Promise)
      return r.then((v) => {
        if (!v.ok) throw tooMany(v)
      })
    if (!r.ok) throw tooMany(r)
    return undefined
  }

  app.post('/oauth2/token', { errorHandler: oauthErrorHandler }, async function token(request, reply) {
    noStore(reply)
    const limited = limitIp(request)
    if (limited) await limited
    const body = readForm(request)
    const grantType = single(body, 'grant_type', 256)
    if (grantType === undefined) throw new InvalidRequest('grant_type is required')
    const grant = svc.grants.get(grantType)
    if (!grant) throw new AegisError('unsupported_grant_type', 'this grant type is not supported')

    let claim: ClientClaim | null = null
    let client: AuthenticatedClient | null = null
    const certificate = clientCertificateOf(deps, request)
    const binding = await readSenderBinding(deps, request, certificate)
    try {
      claim = refineClientClaim(readClientClaim(request.headers.authorization, body), body, certificate)
      if (claim) {
        client = await svc.authenticators.authenticate(claim, 'token')
        // A revoked agent, client or tenant authenticates no more (bootstrap secret, key, certificate alike).
        const held = standingRevocation(client.tenant.id, client.agent, [client.clientId])
        if (held instanceof Promise ? await held : held) throw new ClientAuthFailure('revoked', client.tenant.id)
      } else if (grant.clientAuth === 'required') {
        throw new ClientAuthFailure('missing')
      }
    } catch (err) {
      if (err instanceof ClientAuthFailure) await authFailed(err, claim, request, reply, 'token')
      throw err
    }
    if (client) await limitClient(client.clientId)

    const issueRequest = await grant.prepare({ deps, dir, request, body, client, senderCnf: binding.cnf })
    if (!client) await limitClient(issueRequest.clientId)
    // Whatever the grant mapped to, when it is not the client just checked (a token exchange names its agent only now).
    const held =
      client && issueRequest.agent === client.agent && issueRequest.clientId === client.clientId
        ? null
        : standingRevocation(issueRequest.tenant.id, issueRequest.agent, [issueRequest.clientId])
    if (held instanceof Promise ? await held : held) {
      deps.metrics.authFailures.inc({ reason: 'revoked' })
      deps.audit
        .append({
          type: 'auth.failed',
          tenant: issueRequest.tenant.id,
          actor: `agent:${issueRequest.tenant.id}/${issueRequest.agent.agentId}`,
          subject: issueRequest.clientId,
          data: { reason: 'revoked', grant_type: issueRequest.grant, endpoint: 'token', ip: request.ip },
        })
        .catch((e: unknown) => deps.logger.error({ err: e }, 'auth.failed audit event not written'))
      throw new AegisError('invalid_grant', 'tokens are not issued for this agent: it is revoked')
    }
    if (client) {
      try {
        await client.commit()
      } catch (err) {
        if (err instanceof ClientAuthFailure) await authFailed(err, claim, request, reply, 'token')
        throw err
      }
    }
    if (binding.cnf) {
      issueRequest.extraClaims = { ...issueRequest.extraClaims, cnf: binding.cnf }
      issueRequest.tokenType = binding.tokenType
    }
    await commitBinding(deps, binding, reply)
    const issued = await svc.issuer.issue(issueRequest)
    return issued.response
  })

  // RFC 7009: the token's own client revokes it; unknown, expired or foreign tokens get 200 and change nothing.
  app.post('/oauth2/revoke', { errorHandler: oauthErrorHandler }, async function revoke(request, reply) {
    noStore(reply)
    await limitIp(request)
    const body = readForm(request)
    const client = await authenticateCaller(request, reply, body, 'revoke')
    const raw = body.token
    if (raw === undefined || raw === '') throw new InvalidRequest('token is required')
    if (Array.isArray(raw)) throw new InvalidRequest('parameter token must not be repeated')
    single(body, 'token_type_hint', 64)
    const verified = await svc.verifier.verify(raw)
    if (verified && verified.claims.client_id === client.clientId && verified.claims.tenant === client.tenant.id) {
      const { claims } = verified
      await recordRevocation(
        deps,
        {
          type: 'jti',
          value: claims.jti,
          tenant: claims.tenant,
          agentId: claims.agent_id,
          reason: 'revoked by its client (RFC 7009)',
          expiresAt: (claims.exp + config.tokens.clockSkewSeconds) * 1000,
        },
        { actor: `client:${client.clientId}`, via: 'client' },
      )
    }
    return reply.code(200).send()
  })

  // RFC 7662: callers authenticate as a client (sees its own tokens) or with a gateway/admin bearer token.
  app.post('/oauth2/introspect', { errorHandler: oauthErrorHandler }, async function introspect(request, reply) {
    noStore(reply)
    await limitIp(request)
    const body = readForm(request)
    let admin: AdminPrincipal | null = null
    let client: AuthenticatedClient | null = null
    const auth = request.headers.authorization
    if (typeof auth === 'string' && /^bearer /i.test(auth)) {
      admin = await authenticateAdmin(deps.store, request)
      if (admin.role !== 'admin' && admin.role !== 'gateway') throw new AegisError('forbidden', `role ${admin.role} may not introspect tokens`)
    } else {
      client = await authenticateCaller(request, reply, body, 'introspect')
    }
    const raw = body.token
    if (raw === undefined || raw === '') throw new InvalidRequest('token is required')
    if (Array.isArray(raw)) throw new InvalidRequest('parameter token must not be repeated')
    single(body, 'token_type_hint', 64)
    const inactive = { active: false }
    const verified = await svc.verifier.verify(raw)
    if (!verified) return inactive
    const { claims, kid } = verified
    if (client && (claims.tenant !== client.tenant.id || claims.agent_id !== client.agent.agentId)) return inactive
    if (admin && admin.tenant !== null && admin.tenant !== claims.tenant) return inactive
    let chain: DelegationChain | null
    try {
      chain = readDelegation(claims)
    } catch {
      return inactive
    }
    const { tenant, iat } = claims
    // The token itself; a delegated one also lives only while every later agent of its chain and every token it was
    // exchanged from is unrevoked: all looked up in one store read.
    const covered: TokenFacts[] = [{ jti: claims.jti, tenant, agentId: claims.agent_id, clientId: claims.client_id, kid, iat }]
    if (chain !== null) {
      for (const id of chain.chain.slice(1)) covered.push({ jti: '', tenant, agentId: id, clientId: '', kid: '', iat })
      for (const jti of chain.from) covered.push({ jti, tenant, agentId: '', clientId: '', kid: '', iat })
    }
    if (await findRevocationOfAny(deps, covered)) return inactive
    if (chain === null) {
      const agent = await dir.agent(tenant, claims.agent_id)
      if (!agent || agent.capabilityHash !== claims.capability_hash) return inactive
    } else {
      // And keeps the manifest every agent of its chain had.
      for (const [i, id] of chain.chain.entries()) {
        const agent = await dir.agent(tenant, id)
        if (!agent || agent.capabilityHash !== chain.hashes[i]) return inactive
      }
    }
    // RFC 8705 §3.2 / RFC 9449 §6.2: the confirmation goes to whoever checks the token by introspection.
    const cnf = claims.cnf !== null && typeof claims.cnf === 'object' ? (claims.cnf as Record<string, unknown>) : undefined
    return {
      active: true,
      token_type: typeof cnf?.jkt === 'string' ? 'DPoP' : 'Bearer',
      ...(cnf ? { cnf } : {}),
      iss: claims.iss,
      sub: claims.sub,
      aud: claims.aud,
      scope: claims.scope,
      client_id: claims.client_id,
      agent_id: claims.agent_id,
      tenant: claims.tenant,
      iat: claims.iat,
      nbf: claims.nbf,
      exp: claims.exp,
      jti: claims.jti,
      policy_version: claims.policy_version,
      capability_hash: claims.capability_hash,
      ...(claims.act !== undefined ? { act: claims.act, delegation: claims.delegation } : {}),
    }
  })
}
