import { parseArgs } from 'node:util'
import type { CliContext } from '../context.js'
import { allowedAudiences, buildControlPlane, directoryFor, kpiBook, TokenIssuer } from '../../control-plane/index.js'
import { createLogger } from '../../observability/logger.js'

export const HELP = `aegis token mint --tenant T --agent A [--scope "s1 s2"] [--audience AUD] [--ttl SECONDS]

Mints an access token for a registered agent straight from the store, for a
quick test (same claims, signing key and audit event as the token endpoint;
the client_id claim is the agent's own client id). Prints the JWT alone on
standard output (log lines go to standard error), so
  TOKEN=$(aegis token mint --tenant demo --agent demo-agent)
captures exactly the token.

  --ttl SECONDS   lifetime instead of tokens.defaultTtlSeconds; at most
                  tokens.maxTtlSeconds (AEGIS_TOKENS_MAX_TTL_SECONDS) and the
                  agent's max_ttl_seconds`

/** `aegis token mint`. */
export async function tokenCommand(argv: string[], ctx: CliContext): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '--help' || sub === 'help') {
    ctx.out(HELP)
    return sub === undefined ? 2 : 0
  }
  if (sub !== 'mint') {
    ctx.err(`aegis token: unknown subcommand "${sub}"\n\n${HELP}`)
    return 2
  }
  let values: { tenant?: string; agent?: string; scope?: string; audience?: string; ttl?: string; help?: boolean }
  try {
    values = parseArgs({
      args: rest,
      options: {
        tenant: { type: 'string' },
        agent: { type: 'string' },
        scope: { type: 'string' },
        audience: { type: 'string' },
        ttl: { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }).values
  } catch (err) {
    ctx.err(`aegis token mint: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (values.help) {
    ctx.out(HELP)
    return 0
  }
  if (!values.tenant || !values.agent) {
    ctx.err(`aegis token mint: --tenant and --agent are required\n\n${HELP}`)
    return 2
  }
  let ttl: number | undefined
  if (values.ttl !== undefined) {
    const max = ctx.config.tokens.maxTtlSeconds
    ttl = /^[1-9][0-9]{0,9}$/.test(values.ttl) ? Number(values.ttl) : NaN
    if (!(ttl <= max)) {
      ctx.err(`aegis token mint: --ttl must be a whole number of seconds from 1 to ${max} (tokens.maxTtlSeconds)`)
      return 2
    }
  }

  // Standard output carries the token alone: the control plane's log lines go to standard error.
  const cp = await buildControlPlane(ctx.config, { logger: createLogger(ctx.config.logLevel, 'aegis-control-plane', 'stderr') })
  try {
    const { deps } = cp
    const tenant = await deps.store.tenants.get(values.tenant)
    const agent = tenant ? await deps.store.agents.get(values.tenant, values.agent) : null
    if (!tenant || !agent) {
      ctx.err(`aegis token mint: no agent ${values.tenant}/${values.agent}`)
      return 1
    }
    const scope = values.scope ? values.scope.split(' ').filter(Boolean) : agent.scopes
    const notGranted = scope.filter((s) => !agent.scopes.includes(s))
    if (notGranted.length > 0) {
      ctx.err(`aegis token mint: scope not registered for the agent: ${notGranted.join(' ')}`)
      return 1
    }
    const audiences = values.audience ? [values.audience] : allowedAudiences(agent, ctx.config).slice(0, 1)
    if (!allowedAudiences(agent, ctx.config).includes(audiences[0]!)) {
      ctx.err(`aegis token mint: audience ${audiences[0]} is not registered for the agent`)
      return 1
    }
    const dir = directoryFor(deps)
    // As at the token endpoint: nothing is minted while an agent, client or tenant revocation holds.
    const held = await dir.standing.match({ tenant: tenant.id, agentId: agent.agentId, clientIds: [agent.clientId] })
    if (held) {
      ctx.err(
        `aegis token mint: ${tenant.id}/${agent.agentId} is revoked (revocation ${held.seq}, ${held.type} ${held.value}); lift it with DELETE ` +
          `/admin/v1/revocations/${held.seq}`,
      )
      return 1
    }
    if (ttl !== undefined && ttl > agent.maxTtlSeconds) {
      ctx.err(`aegis token mint: --ttl ${ttl} is above the agent's max_ttl_seconds (${agent.maxTtlSeconds})`)
      return 1
    }
    const issuer = new TokenIssuer(deps, dir, kpiBook(deps))
    const issued = await issuer.issue({
      tenant,
      agent,
      clientId: agent.clientId,
      scope,
      audiences,
      grant: 'cli',
      ...(ttl !== undefined ? { lifetimeSeconds: ttl } : {}),
    })
    ctx.out(issued.response.access_token)
    return 0
  } finally {
    await cp.close()
  }
}
