import { test } from 'node:test'
import assert from 'node:assert/strict'
import { tokenCommand } from '../../../src/cli/commands/token.js'
import { admin, seedAgent, startControlPlane } from '../control-plane/harness.js'

test('aegis token mint refuses an agent whose revocation holds, and mints again once it is lifted', async () => {
  const h = await startControlPlane()
  try {
    const s = await seedAgent(h)
    // The command opens its own control plane on the same database: its own audit chain, as a separate process would have.
    const run = async (): Promise<{ code: number; out: string[]; err: string[] }> => {
      const out: string[] = []
      const err: string[] = []
      const code = await tokenCommand(['mint', '--tenant', s.tenant, '--agent', s.agentId], {
        config: { ...h.config, instanceId: 'cli-mint' },
        out: (l) => out.push(l),
        err: (l) => err.push(l),
      })
      return { code, out, err }
    }
    assert.equal((await run()).code, 0)
    const rev = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'agent', value: s.agentId, tenant: s.tenant })
    assert.equal(rev.status, 201, rev.text)
    const refused = await run()
    assert.equal(refused.code, 1)
    assert.deepEqual(refused.out, [], 'no token printed')
    assert.match(refused.err.join('\n'), /is revoked/)
    const lifted = await admin(h, h.adminToken, 'DELETE', `/revocations/${rev.body.seq}`)
    assert.equal(lifted.status, 200, lifted.text)
    const again = await run()
    assert.equal(again.code, 0, again.err.join('\n'))
    assert.equal(again.out[0]!.split('.').length, 3)
  } finally {
    await h.close()
  }
})
