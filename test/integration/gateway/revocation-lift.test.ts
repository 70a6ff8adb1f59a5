/**
 * Lifting an agent revocation reaches the gateways (SSE and Redis feeds):
 * they stop refusing the agent's new tokens and keep refusing those minted
 * before the revocation; the Redis revocation hash no longer holds it, and a
 * gateway started afterwards loads the same state.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { authorize, eventually, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { REDIS_URL, skipWithoutRedis } from '../../helpers/services.js'

const CALL = { action: { tool: 'crm.read', params: {} } }
const status = async (url: string, token: string): Promise<number> => (await authorize(url, token, CALL)).status

for (const transport of ['sse', 'redis'] as const) {
  describe(`a lifted revocation reaches the gateways (${transport} feed)`, { skip: transport === 'redis' ? await skipWithoutRedis() : false }, () => {
    let env: GatewayEnv
    let gw: RunningGateway

    before(async () => {
      env = await startGatewayEnv({ redis: transport === 'redis' })
      gw = await env.startGateway()
    })
    after(async () => {
      await env?.close()
    })

    test('new tokens of the agent are accepted again, older ones stay refused', async () => {
      const cred = await env.agent('lifted-bot', ['crm.read'])
      const old = await env.token(cred)
      assert.equal(await status(gw.url, old), 200)

      const rev = await env.admin('POST', '/revocations', { type: 'agent', value: 'lifted-bot', tenant: env.tenant, reason: 'incident' })
      await eventually(async () => (await status(gw.url, old)) === 401)
      await assert.rejects(env.token(cred), /answered 401/, 'no token while the revocation holds')

      // Tokens carry whole seconds: mint the next one in a later second than the revocation.
      const nextSecond = ((rev.created_at as number) + 1) * 1000
      await new Promise((r) => setTimeout(r, Math.max(0, nextSecond - Date.now())))
      const lifted = await env.admin('DELETE', `/revocations/${rev.seq as number}`)
      assert.equal(lifted.seq, rev.seq)
      assert.equal(typeof lifted.lift_seq, 'number')
      const fresh = await env.token(cred)
      await eventually(async () => (await status(gw.url, fresh)) === 200)
      assert.equal(await status(gw.url, old), 401, 'the token from before the revocation stays refused')
      // The gateway's applied sequence covers the lift.
      const appliedSeq = async (): Promise<number> => ((await (await fetch(`${gw.url}/healthz`)).json()) as { feed: { applied_seq: number } }).feed.applied_seq
      await eventually(async () => (await appliedSeq()) >= (lifted.lift_seq as number))

      if (env.prefix) {
        const redis = new Redis(REDIS_URL)
        try {
          assert.equal(await redis.hget(`${env.prefix}aegis:revocations`, String(rev.seq)), null, 'the lift removed the entry from the Redis hash')
        } finally {
          redis.disconnect()
        }
      }
    })

    test('a gateway started after a lift loads the same state', async () => {
      const cred = await env.agent('later-bot', ['crm.read'])
      const old = await env.token(cred)
      const rev = await env.admin('POST', '/revocations', { type: 'agent', value: 'later-bot', tenant: env.tenant })
      const nextSecond = ((rev.created_at as number) + 1) * 1000
      await new Promise((r) => setTimeout(r, Math.max(0, nextSecond - Date.now())))
      await env.admin('DELETE', `/revocations/${rev.seq as number}`)
      const fresh = await env.token(cred)
      const later = await env.startGateway()
      assert.equal(await status(later.url, fresh), 200)
      assert.equal(await status(later.url, old), 401)
    })
  })
}
