import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { loadConfig } from '../../../src/config/load.js'
import { AegisError } from '../../../src/errors.js'
import {
  DEFAULT_TUNING,
  DecisionPipeline,
  GatewayState,
  ManifestCache,
  MemoryDecisionSink,
  type DecisionOutcome,
  type DecisionRequest,
  type GatewayDeps,
} from '../../../src/gateway/index.js'
import { noApprovals } from '../../../src/gateway/pipeline/index.js'
import { buildManifest, capabilityHash } from '../../../src/lib/capability.js'
import { systemClock } from '../../../src/lib/clock.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { StrictEngine } from '../../../src/policy/strict.js'
import { MemoryDenyList } from '../../../src/store/memory/deny-list.js'
import { MemoryReplayCache } from '../../../src/store/memory/replay-cache.js'
import { createVerifier, type Verifier } from '../../../src/verify/index.js'

const ISSUER = 'https://aegis.test'
const AUDIENCE = 'aegis-gateway'
const manifest = buildManifest(['crm.read'])
const HASH = capabilityHash(manifest)
const { privateKey, publicKey } = generateKeyPairSync('ed25519')
const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')

function mint(claims: Record<string, unknown> = {}, kid = 'k1'): string {
  const now = Math.floor(Date.now() / 1000)
  const payload = {
    iss: ISSUER,
    sub: 'bot',
    agent_id: 'bot',
    client_id: 'cl_1',
    tenant: 'acme',
    aud: AUDIENCE,
    scope: 'crm:read',
    iat: now,
    nbf: now,
    exp: now + 600,
    jti: randomBytes(12).toString('base64url'),
    policy_version: 'none',
    capability_hash: HASH,
    ...claims,
  }
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete (payload as Record<string, unknown>)[k]
  const input = `${b64({ alg: 'EdDSA', typ: 'at+jwt', kid })}.${b64(payload)}`
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`
}

const call = (token: string | undefined, tool = 'crm.read'): DecisionRequest => ({
  token,
  tool,
  params: {},
  resource: null,
  dryRun: false,
  override: null,
  clientAddress: null,
  mode: 'authorize',
})

async function outcome(p: DecisionPipeline, req: DecisionRequest): Promise<DecisionOutcome | AegisError> {
  try {
    return await p.decide(req)
  } catch (err) {
    if (err instanceof AegisError) return err
    throw err
  }
}

describe('DecisionPipeline with a real verifier (JWKS on loopback) and in-process state', () => {
  let server: Server
  let verifier: Verifier
  let fetches = 0
  let served: unknown = manifest
  const make = (): { pipeline: DecisionPipeline; state: GatewayState; sink: MemoryDecisionSink; manifests: ManifestCache } => {
    const logger = silentLogger()
    const metrics = new Metrics()
    const denyList = new MemoryDenyList()
    const state = new GatewayState({ denyList, compiler: { compile: () => new StrictEngine() }, logger, metrics, clock: systemClock })
    const manifests = new ManifestCache(async () => {
      fetches++
      await new Promise((r) => setTimeout(r, 20))
      return served
    }, logger)
    const sink = new MemoryDecisionSink()
    const deps: GatewayDeps = {
      config: loadConfig({ env: {}, overrides: { issuer: ISSUER, logLevel: 'silent' } }),
      logger,
      metrics,
      clock: systemClock,
      gatewayId: 'unit',
      verifier,
      denyList,
      replay: new MemoryReplayCache(),
      state,
      manifests,
      policyCompiler: { compile: () => new StrictEngine() },
      decisions: sink,
      approvals: noApprovals,
      redisHealth: null,
      tuning: DEFAULT_TUNING,
    }
    return { pipeline: new DecisionPipeline(deps), state, sink, manifests }
  }

  before(async () => {
    const body = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'EdDSA', use: 'sig' }] })
    server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(body)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}/jwks` })
    await verifier.jwks.ready
  })
  after(async () => {
    verifier.close()
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  })

  test('until the feed snapshot is loaded every call gets 503, not a verdict on the token', async () => {
    const { pipeline } = make()
    const r = await outcome(pipeline, call(mint()))
    assert.ok(r instanceof AegisError)
    assert.equal(r.code, 'temporarily_unavailable')
  })

  test('the first call fetches the manifest once (single flight); later calls decide synchronously', async () => {
    const { pipeline, state } = make()
    state.applySnapshot({ seq: 0, revocations: [], agents: [{ tenant: 'acme', agentId: 'bot', capabilityHash: HASH }], policies: [], generatedAt: 0 })
    fetches = 0
    served = manifest
    const token = mint()
    const first = await Promise.all([outcome(pipeline, call(token)), outcome(pipeline, call(token)), outcome(pipeline, call(mint()))])
    assert.equal(fetches, 1)
    for (const o of first) assert.equal((o as DecisionOutcome).decision, 'allow')
    const sync = pipeline.decide(call(token))
    assert.ok(!(sync instanceof Promise), 'no await once token and manifest are known')
    assert.equal((sync as DecisionOutcome).decision, 'allow')
    assert.equal((pipeline.decide(call(token, 'crm.delete')) as DecisionOutcome).decision, 'deny')
  })

  test('a manifest that does not match its hash is refused and not cached', async () => {
    const { pipeline, state } = make()
    state.applySnapshot({ seq: 0, revocations: [], agents: [{ tenant: 'acme', agentId: 'bot', capabilityHash: HASH }], policies: [], generatedAt: 0 })
    served = { capabilities: ['crm.read', 'payments.transfer'] }
    fetches = 0
    const r = await outcome(pipeline, call(mint()))
    assert.ok(r instanceof AegisError)
    assert.equal(r.code, 'temporarily_unavailable')
    served = manifest
    assert.equal(((await outcome(pipeline, call(mint()))) as DecisionOutcome).decision, 'allow')
    assert.equal(fetches, 2)
  })

  test('tokens without the Aegis claims, for unknown or deleted agents, or with an unknown kid get invalid_token, audited', async () => {
    const { pipeline, state, sink } = make()
    state.applySnapshot({
      seq: 0,
      revocations: [],
      agents: [
        { tenant: 'acme', agentId: 'bot', capabilityHash: HASH },
        { tenant: 'acme', agentId: 'gone', capabilityHash: null },
      ],
      policies: [],
      generatedAt: 0,
    })
    const bad = [
      mint({ tenant: undefined }),
      mint({ capability_hash: undefined }),
      mint({ client_id: undefined }),
      mint({ agent_id: 'other' }),
      mint({ sub: 'stranger', agent_id: 'stranger' }),
      mint({ sub: 'gone', agent_id: 'gone' }),
      mint({}, 'unknown-kid'),
      undefined,
    ]
    for (const t of bad) {
      const r = await outcome(pipeline, call(t))
      assert.ok(r instanceof AegisError, String(t))
      assert.equal(r.code, 'invalid_token')
    }
    assert.equal(sink.events.filter((e) => e.type === 'token.refused').length, bad.length)
  })
})
