/** RFC 6749 §4.4 client_credentials: the authenticated agent gets a token for itself. */
import { AegisError } from '../../../errors.js'
import { resolveAudiences, resolveScope } from '../request-scope.js'
import type { IssueRequest } from '../issue.js'
import type { GrantContext, GrantHandler } from './types.js'

export const clientCredentialsGrant: GrantHandler = {
  grantType: 'client_credentials',
  clientAuth: 'required',
  prepare(ctx: GrantContext): IssueRequest {
    const client = ctx.client
    if (!client) throw new AegisError('invalid_client', 'client authentication failed')
    const scope = resolveScope(client.agent, ctx.body)
    const audiences = resolveAudiences(client.agent, ctx.deps.config, ctx.body)
    return { tenant: client.tenant, agent: client.agent, clientId: client.clientId, scope, audiences, grant: 'client_credentials' }
  },
}
