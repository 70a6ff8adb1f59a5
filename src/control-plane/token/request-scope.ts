/** Scope (RFC 6749 §3.3) and audience (RFC 8707, `audience`/`resource`) of a token request. */
import type { AegisConfig } from '../../config/schema.js'
import { AegisError } from '../../errors.js'
import type { Agent } from '../../store/types.js'
import { repeated, single, type FormBody } from './params.js'

/**
 * The granted scopes: the requested ones, each registered for the agent, or
 * every registered scope when none was requested. `invalid_scope` otherwise.
 */
export function resolveScope(agent: Agent, body: FormBody): string[] {
  const raw = single(body, 'scope', 4096)
  if (raw === undefined) return agent.scopes
  const requested = [...new Set(raw.split(' ').filter((s) => s !== ''))]
  if (requested.length === 0) return agent.scopes
  for (const s of requested) {
    if (!agent.scopes.includes(s)) throw new AegisError('invalid_scope', 'the requested scope is not granted to this client')
  }
  return requested
}

/** The audiences the agent may ask for: its registered ones, default `[config.audience]`. */
export function allowedAudiences(agent: Agent, config: AegisConfig): string[] {
  return agent.audiences.length > 0 ? agent.audiences : [config.audience]
}

/**
 * The token's audiences from `audience` and `resource` (either spelling, each
 * may repeat). Each must be registered for the agent, else `invalid_target`.
 * None requested: `config.audience` when the agent may have it, else its first.
 */
export function resolveAudiences(agent: Agent, config: AegisConfig, body: FormBody): string[] {
  const allowed = allowedAudiences(agent, config)
  const requested = [...repeated(body, 'audience', 10, 512, 'invalid_target'), ...repeated(body, 'resource', 10, 512, 'invalid_target')]
  if (requested.length === 0) return [allowed.includes(config.audience) ? config.audience : allowed[0]!]
  const out = [...new Set(requested)]
  for (const a of out) {
    if (!allowed.includes(a)) throw new AegisError('invalid_target', 'the requested audience is not registered for this client')
  }
  return out
}
