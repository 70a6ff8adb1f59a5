import { test } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import { createAuditWriter, verifyAuditStore } from '../../../src/control-plane/audit/index.js'
import { createKeyManager } from '../../../src/control-plane/keys/index.js'
import type { AegisError } from '../../../src/errors.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { openPostgresStore } from '../../../src/store/index.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { deferrer, logger, manualClock, testConfig } from '../../unit/keys/fixture.js'

test('on PostgreSQL a failed audit batch rejects all its callers with 503, hostile text does not fail a batch, and the chain stays whole', {
  skip: await skipWithoutPostgres(),
}, async (t) => {
  const defer = deferrer(t)
  const schema = await freshPostgresSchema()
  defer(() => schema.drop())
  const store = await openPostgresStore(schema.url, { logger })
  defer(() => store.close())
  const clock = manualClock()
  const keys = await createKeyManager({ config: testConfig({ databaseUrl: schema.url }), store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-pg', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())

  // A NUL and a lone surrogate in attacker-supplied text are stored, not fatal to the batch.
  await Promise.all([
    audit.append({ type: 'auth.failed', actor: 'client:evil\u0000id', subject: 'x\uD800', data: { client_id: 'evil\u0000id' } }),
    audit.append({ type: 'token.issued', tenant: 'acme', data: { n: 1 } }),
  ])

  const c = new pg.Client({ connectionString: schema.url })
  await c.connect()
  await c.query(
    `CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.type = 'boom' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ ` +
      `LANGUAGE plpgsql`,
  )
  await c.query(`CREATE TRIGGER refuse BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse()`)
  await c.end()

  const results = await Promise.allSettled([
    audit.append({ type: 'token.issued', data: { n: 2 } }),
    audit.append({ type: 'boom' }),
    audit.append({ type: 'token.issued', data: { n: 3 } }),
  ])
  for (const r of results) {
    assert.equal(r.status, 'rejected')
    const err = (r as PromiseRejectedResult).reason as AegisError
    assert.equal(err.code, 'temporarily_unavailable')
    assert.equal(err.status, 503)
  }
  await audit.append({ type: 'token.issued', data: { n: 4 } })
  const chain = await store.audit.chain('cp-pg', 0, 10)
  assert.deepEqual(
    chain.map((e) => [e.chainSeq, e.type]),
    [
      [1, 'auth.failed'],
      [2, 'token.issued'],
      [3, 'token.issued'],
    ],
  )
  assert.equal(chain[2]!.data.n, 4)
  assert.equal(chain[0]!.actor, 'client:evil\uFFFDid')
  assert.equal(chain[0]!.data.client_id, 'evil\u0000id')
  await audit.close()
  const report = await verifyAuditStore(store)
  assert.equal(report.ok, true, JSON.stringify(report.firstBad))
})
