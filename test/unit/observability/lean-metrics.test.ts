import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import client, { AggregatorRegistry, Registry } from 'prom-client'
import { LeanHistogram } from '../../../src/observability/lean-metrics.js'
import { Metrics } from '../../../src/observability/metrics.js'

const BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1]
// On a bound, between bounds, below the first, past the last, zero and a repeated value.
const SAMPLES = [0.00005, 0.00007, 0.0001, 0.0003, 0.001, 0.004, 0.099, 0.1, 0.5, 7, 0, 0, 0.00002, 0.0025]

function pair(): { lean: LeanHistogram; leanRegistry: Registry; reference: client.Histogram; referenceRegistry: Registry } {
  const leanRegistry = new Registry()
  const referenceRegistry = new Registry()
  const lean = new LeanHistogram('aegis_test_seconds', 'A test histogram', BUCKETS, leanRegistry)
  const reference = new client.Histogram({ name: 'aegis_test_seconds', help: 'A test histogram', buckets: BUCKETS, registers: [referenceRegistry] })
  return { lean, leanRegistry, reference, referenceRegistry }
}

describe('LeanHistogram', () => {
  test("exposes the same text as prom-client's Histogram fed the same values", async () => {
    const { lean, leanRegistry, reference, referenceRegistry } = pair()
    assert.equal(await leanRegistry.metrics(), await referenceRegistry.metrics())
    for (const v of SAMPLES) {
      lean.observe(v)
      reference.observe(v)
    }
    const text = await leanRegistry.metrics()
    assert.equal(text, await referenceRegistry.metrics())
    assert.match(text, /aegis_test_seconds_bucket\{le="0\.0001"\} 6\n/)
    assert.match(text, /aegis_test_seconds_count 14\n/)
    leanRegistry.resetMetrics()
    reference.reset()
    assert.match(await leanRegistry.metrics(), /aegis_test_seconds_count 0\n/)
  })

  test('ignores values that are not finite numbers, and refuses repeated or infinite buckets', async () => {
    const { lean, leanRegistry } = pair()
    lean.observe(Number.NaN)
    lean.observe(Number.POSITIVE_INFINITY)
    lean.observe(0.001)
    assert.match(await leanRegistry.metrics(), /aegis_test_seconds_count 1\n/)
    assert.throws(() => new LeanHistogram('x', 'x', [1, 1], new Registry()), TypeError)
    assert.throws(() => new LeanHistogram('x', 'x', [1, Number.POSITIVE_INFINITY], new Registry()), TypeError)
  })

  test('sums across workers as prom-client aggregates its own histograms', async () => {
    const a = pair()
    const b = pair()
    for (const v of SAMPLES) {
      a.lean.observe(v)
      a.reference.observe(v)
    }
    for (const v of SAMPLES.slice(3)) {
      b.lean.observe(v)
      b.reference.observe(v)
    }
    const lean = AggregatorRegistry.aggregate([await a.leanRegistry.getMetricsAsJSON(), await b.leanRegistry.getMetricsAsJSON()])
    const reference = AggregatorRegistry.aggregate([await a.referenceRegistry.getMetricsAsJSON(), await b.referenceRegistry.getMetricsAsJSON()])
    assert.equal(await lean.metrics(), await reference.metrics())
    assert.match(await lean.metrics(), /aegis_test_seconds_count 25\n/)
  })

  test('pending decision and issuance counts reach the registry at every read, once', async () => {
    const metrics = new Metrics({ tenantLabels: true })
    const allow = metrics.decisionCount('allow', true)
    assert.equal(metrics.decisionCount('allow', true), allow)
    allow.n += 2
    metrics.decisionCount('deny', false).n += 1
    for (let i = 0; i < 3; i++) metrics.countIssued('acme', 'client_credentials')
    let text = await metrics.registry.metrics()
    assert.match(text, /aegis_decisions_total\{decision="allow",enforced="true"\} 2\n/)
    assert.match(text, /aegis_decisions_total\{decision="deny",enforced="false"\} 1\n/)
    assert.match(text, /aegis_tokens_issued_total\{tenant="acme",grant="client_credentials"\} 3\n/)
    allow.n += 1
    text = await metrics.registry.metrics()
    assert.match(text, /aegis_decisions_total\{decision="allow",enforced="true"\} 3\n/)
    assert.match(text, /aegis_tokens_issued_total\{tenant="acme",grant="client_credentials"\} 3\n/)
    const json = await metrics.registry.getMetricsAsJSON()
    const decisions = json.find((m) => m.name === 'aegis_decisions_total')
    assert.deepEqual(decisions?.values.map((v) => v.value).sort(), [1, 3])
  })

  test('past 10,000 pending label sets an issuance count goes to prom-client at once', async () => {
    const metrics = new Metrics({ tenantLabels: true })
    for (let i = 0; i < 10_001; i++) metrics.countIssued(`t${i}`, 'client_credentials')
    metrics.countIssued('t10000', 'client_credentials')
    const text = await metrics.registry.metrics()
    assert.match(text, /aegis_tokens_issued_total\{tenant="t10000",grant="client_credentials"\} 2\n/)
    assert.match(text, /aegis_tokens_issued_total\{tenant="t0",grant="client_credentials"\} 1\n/)
  })
})
