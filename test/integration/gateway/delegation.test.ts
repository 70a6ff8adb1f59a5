import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt } from 'jose'
import { activatePolicy, authorize, eventually, startGatewayEnv, type Credential, type GatewayEnv } from '../../helpers/gateway-env.js'
import { startGatewayProcess, type GatewayProcess } from '../../helpers/gateway-processes.js'
import { REDIS_URL, skipWithoutRedis } from '../../helpers/services.js'

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
const AT = 'urn:ietf:params:oauth:token-type:access_token'

const POLICY = `
@id("crm-read")
permit (principal, action == Action::"crm.read", resource);

@id("crm-update")
permit (principal, action == Action::"crm.update", resource);

@id("mail-send")
permit (principal, action == Action::"mail.send", resource);

@id("no-deep-mail")
forbid (principal, action == Action::"mail.send", resource)
when { context has delegation && context.delegation.chain.contains("leaf") && context.delegation.depth >= 2 };
`

interface Exchange {
  status: number
  body: Record<string, any>
}

describe('delegation chains (RFC 8693 actor tokens) across two gateway processes', { skip: await skipWithoutRedis() }, () => {
  let env: GatewayEnv
  let other: GatewayEnv
  const gateways: GatewayProcess[] = []
  const creds: Record<string, Credential> = {}

  async function exchange(subject: string, actor: string, extra: Record<string, string> = {}): Promise<Exchange> {
    const res = await fetch(`${env.issuer}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: GRANT,
        subject_token: subject,
        subject_token_type: AT,
        actor_token: actor,
        actor_token_type: AT,
        ...extra,
      }).toString(),
    })
    return { status: res.status, body: (await res.json()) as Record<string, any> }
  }

  before(async () => {
    env = await startGatewayEnv({ redis: true })
    other = await startGatewayEnv()
    creds.planner = await env.agent('planner', ['crm.read', 'crm.update', 'mail.send'], { delegates: ['worker', 'looper', 'stranger'] })
    creds.worker = await env.agent('worker', ['crm.read', 'crm.update', 'mail.send'], { delegates: ['leaf', 'planner'] })
    creds.leaf = await env.agent('leaf', ['crm.read', 'mail.send', 'files.write'], { delegates: ['deeper'] })
    creds.deeper = await env.agent('deeper', ['crm.read'])
    creds.looper = await env.agent('looper', ['crm.read'], { delegates: ['planner'] })
    creds.nobody = await env.agent('nobody', ['crm.read'])
    creds.alien = await other.agent('stranger', ['crm.read'])
    await activatePolicy(env, POLICY)
    for (let i = 1; i <= 2; i++) {
      gateways.push(
        await startGatewayProcess(
          { issuer: env.issuer, gatewayToken: env.gatewayToken, redisUrl: REDIS_URL, logLevel: 'silent', gateway: { id: `gw-del-${i}-${env.tenant}` } },
          env.tuning(),
        ),
      )
    }
  })
  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()))
    await env?.close()
    await other?.close()
  })

  const tok = (name: string): Promise<string> => env.token(creds[name]!)

  test('a three-hop chain carries every agent, narrows at each hop, refuses a wider request, and dies with its middle agent at every gateway', async () => {
    const planner = await tok('planner')
    const hop1 = await exchange(planner, await tok('worker'), { capabilities: 'crm.read crm.update mail.send', scope: 'crm:read payments:write' })
    assert.equal(hop1.status, 200, JSON.stringify(hop1.body))
    assert.equal(hop1.body.issued_token_type, AT)
    const c1 = decodeJwt(hop1.body.access_token)
    assert.equal(c1.sub, 'planner')
    assert.equal(c1.agent_id, 'planner')
    assert.deepEqual(c1.act, { sub: 'worker' })

    // The second hop narrows the tools (leaf lacks crm.update) and asks for fewer still.
    const wider = await exchange(hop1.body.access_token, await tok('leaf'), { capabilities: 'crm.read crm.update' })
    assert.equal(wider.status, 400)
    assert.equal(wider.body.error, 'invalid_scope')
    const hop2 = await exchange(hop1.body.access_token, await tok('leaf'), { scope: 'crm:read' })
    assert.equal(hop2.status, 200, JSON.stringify(hop2.body))
    const leafToken = hop2.body.access_token as string
    const c2 = decodeJwt(leafToken)
    assert.equal(c2.sub, 'planner')
    assert.deepEqual(c2.act, { sub: 'leaf', act: { sub: 'worker' } })
    assert.equal(c2.scope, 'crm:read')
    assert.notEqual(c2.capability_hash, c1.capability_hash)
    const manifest = await env.admin('GET', `/manifests/${c2.capability_hash}`)
    assert.deepEqual(manifest.capabilities ?? (manifest.manifest as { capabilities: string[] }).capabilities, ['crm.read', 'mail.send'])

    // The third hop: the leaf delegates to `deeper`, whose only tool is crm.read.
    const hop3 = await exchange(leafToken, await tok('deeper'))
    assert.equal(hop3.status, 200, JSON.stringify(hop3.body))
    assert.deepEqual(decodeJwt(hop3.body.access_token).act, { sub: 'deeper', act: { sub: 'leaf', act: { sub: 'worker' } } })

    for (const g of gateways) {
      await eventually(async () => (await authorize(g.url, leafToken, { action: { tool: 'crm.read' } })).status === 200)
      const read = await authorize(g.url, leafToken, { action: { tool: 'crm.read' } })
      assert.equal(read.body.decision, 'allow')
      // Dropped at the second hop: never in the leaf's manifest, whatever the policy says.
      assert.equal((await authorize(g.url, leafToken, { action: { tool: 'crm.update' } })).body.decision, 'deny')
      // Cedar sees the chain: the forbid on a deep chain through `leaf` applies.
      const mail = await authorize(g.url, leafToken, { action: { tool: 'mail.send' } })
      assert.equal(mail.body.decision, 'deny')
      assert.ok(JSON.stringify(mail.body.reasons).includes('no-deep-mail'), JSON.stringify(mail.body))
      // The first hop's token still sends mail: depth 1.
      assert.equal((await authorize(g.url, hop1.body.access_token, { action: { tool: 'mail.send' } })).body.decision, 'allow')
    }

    const introspected = await fetch(`${env.issuer}/oauth2/introspect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.adminToken}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: leafToken }).toString(),
    })
    const intro = (await introspected.json()) as Record<string, unknown>
    assert.equal(intro.active, true)
    assert.deepEqual(intro.act, { sub: 'leaf', act: { sub: 'worker' } })

    const issued = (await env.cp.deps.store.audit.query({ type: 'token.issued', limit: 500 })).find((e) => e.data?.jti === c2.jti)
    assert.ok(issued, 'token.issued for the second hop')
    assert.deepEqual((issued.data as { delegation: { chain: string[] } }).delegation.chain, ['planner', 'worker', 'leaf'])

    // Revoking the middle agent refuses the leaf's token at every gateway (and the planner's own token still works).
    await env.admin('POST', '/revocations', { type: 'agent', value: 'worker', tenant: env.tenant })
    for (const g of gateways) {
      await eventually(async () => (await authorize(g.url, leafToken, { action: { tool: 'crm.read' } })).status === 401, 10_000, 5)
      assert.equal((await authorize(g.url, hop3.body.access_token, { action: { tool: 'crm.read' } })).status, 401)
      assert.equal((await authorize(g.url, planner, { action: { tool: 'crm.read' } })).status, 200)
    }
    await eventually(async () => {
      const r = await fetch(`${env.issuer}/oauth2/introspect`, {
        method: 'POST',
        headers: { authorization: `Bearer ${env.adminToken}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: leafToken }).toString(),
      })
      return ((await r.json()) as { active: boolean }).active === false
    })
    // No new hop either.
    const after = await exchange(planner, await tok('looper'))
    assert.equal(after.status, 200, 'looper is not revoked')
    assert.equal((await exchange(hop1.body.access_token, await tok('leaf'))).status, 400)
  })

  test('revoking the jti of a token a chain was exchanged from refuses every token exchanged from it, at every gateway and at introspection', async () => {
    const origin = await env.agent('origin', ['crm.read'], { delegates: ['relay'] })
    const relay = await env.agent('relay', ['crm.read'], { delegates: ['tail'] })
    const tail = await env.agent('tail', ['crm.read'])
    const originToken = await env.token(origin)
    const relayToken = await env.token(relay)
    const hop1 = await exchange(originToken, relayToken)
    assert.equal(hop1.status, 200, JSON.stringify(hop1.body))
    const tailToken = await env.token(tail)
    const hop2 = await exchange(hop1.body.access_token, tailToken)
    assert.equal(hop2.status, 200, JSON.stringify(hop2.body))
    const jti = (t: string): string => decodeJwt(t).jti as string
    assert.deepEqual((decodeJwt(hop2.body.access_token).delegation as { from: string[] }).from, [
      jti(originToken),
      jti(relayToken),
      jti(hop1.body.access_token),
      jti(tailToken),
    ])
    // A second chain from another token of the same agent is not touched by the revocation below.
    const sibling = await exchange(await env.token(origin), await env.token(relay))
    assert.equal(sibling.status, 200)
    const introspect = async (token: string): Promise<boolean> => {
      const r = await fetch(`${env.issuer}/oauth2/introspect`, {
        method: 'POST',
        headers: { authorization: `Bearer ${env.adminToken}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      })
      return ((await r.json()) as { active: boolean }).active
    }
    for (const g of gateways) await eventually(async () => (await authorize(g.url, hop2.body.access_token, { action: { tool: 'crm.read' } })).status === 200)
    assert.equal(await introspect(hop2.body.access_token), true)

    await env.admin('POST', '/revocations', { type: 'jti', value: jti(originToken), tenant: env.tenant, reason: 'origin token leaked' })
    for (const g of gateways) {
      for (const t of [hop1.body.access_token, hop2.body.access_token]) {
        await eventually(async () => (await authorize(g.url, t, { action: { tool: 'crm.read' } })).status === 401, 10_000, 5)
        assert.match(String((await authorize(g.url, t, { action: { tool: 'crm.read' } })).body.error_description), /exchanged from is revoked/)
      }
      assert.equal((await authorize(g.url, sibling.body.access_token, { action: { tool: 'crm.read' } })).status, 200)
      assert.equal((await authorize(g.url, relayToken, { action: { tool: 'crm.read' } })).status, 200)
    }
    assert.equal(await introspect(hop1.body.access_token), false)
    assert.equal(await introspect(hop2.body.access_token), false)
    assert.equal(await introspect(sibling.body.access_token), true)
    // Nor can the chain be extended from a token exchanged from it.
    const again = await exchange(hop1.body.access_token, await env.token(tail))
    assert.equal(again.status, 400)
    assert.match(String(again.body.error_description), /revoked/)
  })

  test('attacks: another tenant, no permission, a loop, over the depth limit, a delegated actor — each invalid_request (RFC 8693 §2.2.2)', async () => {
    const planner = await tok('planner')
    const alien = await other.token(creds.alien!)
    const cross = await exchange(planner, alien)
    assert.equal(cross.status, 400)
    assert.equal(cross.body.error, 'invalid_request')

    const denied = await exchange(planner, await tok('nobody'))
    assert.equal(denied.status, 400)
    assert.equal(denied.body.error, 'invalid_request')
    assert.match(denied.body.error_description, /delegates/)

    const self = await exchange(planner, planner)
    assert.equal(self.status, 400)
    assert.equal(self.body.error, 'invalid_request')

    // planner → looper → planner: looper lists planner, but planner is already in the chain.
    const toLooper = await exchange(planner, await tok('looper'))
    assert.equal(toLooper.status, 200, JSON.stringify(toLooper.body))
    const loop = await exchange(toLooper.body.access_token, planner)
    assert.equal(loop.status, 400)
    assert.equal(loop.body.error, 'invalid_request')
    assert.match(loop.body.error_description, /loop/)

    const delegatedActor = await exchange(planner, toLooper.body.access_token)
    assert.equal(delegatedActor.status, 400)
    assert.equal(delegatedActor.body.error, 'invalid_request')

    const missingType = await fetch(`${env.issuer}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: GRANT, subject_token: planner, subject_token_type: AT, actor_token: planner }).toString(),
    })
    assert.equal(missingType.status, 400)

    // The tenant allows one hop: the second is refused.
    await env.admin('PATCH', `/tenants/${env.tenant}`, { max_delegation_depth: 1 })
    try {
      const one = await exchange(planner, await tok('looper'))
      assert.equal(one.status, 200)
      const leaf = await env.token(creds.deeper!)
      const two = await exchange(one.body.access_token, leaf)
      assert.equal(two.status, 400)
      assert.equal(two.body.error, 'invalid_request')
      assert.match(two.body.error_description, /depth/)
    } finally {
      await env.admin('PATCH', `/tenants/${env.tenant}`, { max_delegation_depth: null })
    }
    assert.equal((await env.admin('GET', `/tenants/${env.tenant}`)).max_delegation_depth, 4)

    // An audience neither token holds.
    const target = await exchange(planner, await tok('looper'), { audience: 'https://elsewhere.example' })
    assert.equal(target.status, 400)
    assert.equal(target.body.error, 'invalid_target')
  })

  test('a forged chain (act without a signature of ours) never reaches a gateway: the exchange is the only way in', async () => {
    const planner = await tok('planner')
    const [h, p] = planner.split('.') as [string, string, string]
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString())
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, act: { sub: 'worker' } })).toString('base64url')}.${planner.split('.')[2]}`
    for (const g of gateways) assert.equal((await authorize(g.url, forged, { action: { tool: 'crm.read' } })).status, 401)
  })
})
