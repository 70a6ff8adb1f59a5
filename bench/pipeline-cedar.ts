/**
 * The decision pipeline with Cedar (issue 4, last bullet):
 * - in process, reused tokens (verified-token cache hits), every call decided
 *   by the tenant's Cedar bundle (payments template; the 500-policy bundle of
 *   bench/policy.ts), decision cache off so each call reaches Cedar, beside
 *   the bare `statefulIsAuthorized` rate for the same bundle and calls (whole
 *   set preparsed, Cedar inputs prebuilt) measured in alternating rounds of
 *   the same run. Goal: pipeline ≥ 70 % of bare. Also the pipeline with the
 *   engine's decision cache on (repeated identical calls);
 * - HTTP `POST /v1/authorize` with the payments template active, reused
 *   token, 50 connections (autocannon) against a gateway in its own process.
 *   Goal: ≥ 5,000 decisions/s, p99 < 10 ms.
 */
import { randomBytes, sign } from 'node:crypto'
import { readFileSync } from 'node:fs'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import autocannon from 'autocannon'
import type { DecisionPipeline } from '../src/gateway/index.js'
import { buildManifest, capabilityHash } from '../src/lib/capability.js'
import { CedarCompiler } from '../src/policy/cedar/engine.js'
import { buildContext, buildEntities } from '../src/policy/cedar/request.js'
import { activatePolicy, startGatewayEnv } from '../test/helpers/gateway-env.js'
import { startGatewayProcess, type GatewayProcess } from '../test/helpers/gateway-processes.js'
import { benchVerifier, inProcessPipeline } from './in-process-pipeline.js'
import { generatePolicyBundle } from './policy.js'

const ISSUER = 'https://aegis.bench'
const AUDIENCE = 'aegis-gateway'
const TENANT = 'acme'
const AGENT = 'billing-bot'
const SCOPES = ['payments:read', 'payments:write', 'svc:write', 'svc:read', 'team-a']

export const PAYMENTS_TEMPLATE = readFileSync(new URL('../policies/templates/payments/policy.cedar', import.meta.url), 'utf8')

interface Call {
  tool: string
  params: Record<string, unknown>
  resource: string | null
}

/**
 * Payments calls without a high-risk decision (those are single-use jti, so
 * a reused token would be a replay): sanitize, allow, deny and approval_needed.
 */
export const PAYMENTS_CALLS: Call[] = [
  { tool: 'payments.charge', params: { amount: 25, card_number: '4111111111111111', card: { number: '4111111111111111', cvv: '123' } }, resource: null },
  { tool: 'payments.get', params: {}, resource: 'pay_123' },
  { tool: 'payments.refund', params: { amount: 40, order: 'o-1' }, resource: null },
  { tool: 'payments.charge', params: { amount: 5001, card_number: '4111' }, resource: null },
  { tool: 'payments.transfer', params: { amount: 2000, currency: 'USD' }, resource: null },
  { tool: 'payments.delete_all', params: {}, resource: null },
]

/** Calls on the 500-policy bundle's tools op1…op4 (op0 is `@risk("high")`). */
function bundleCalls(count: number): Call[] {
  const out: Call[] = []
  for (let i = 0; i < count; i++) {
    const tool = `svc${(i * 7) % 50}.op${1 + (i % 4)}`
    out.push({
      tool,
      resource: `acct-${i}`,
      params: {
        amount: 200 + ((i * 37) % 2000),
        currency: 'USD',
        kind: i % 3 === 0 ? 'card' : 'bank',
        card_number: '4111111111111111',
        owner: { team: 'team-a', ssn: '000' },
        ref: `INV-${i}`,
      },
    })
  }
  return out
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

export interface CedarPipelineFigures {
  policies: number
  /** Bare `statefulIsAuthorized` over the same calls, inputs prebuilt. */
  barePerSec: number
  /** Whole pipeline, reused tokens, decision cache off. */
  pipelinePerSec: number
  /** Whole pipeline, reused tokens, the engine's decision cache on. */
  pipelineCachedPerSec: number
  /** Decisions seen, by kind (what the mix exercised). */
  decisions: Record<string, number>
}

/** The pipeline in process with a real verifier (JWKS over loopback), deny list, replay cache and a Cedar bundle. */
async function measureBundle(name: string, text: string, calls: Call[], seconds: number): Promise<CedarPipelineFigures> {
  const { privateKey, kid, config, verifier, logger, close } = await benchVerifier(ISSUER, AUDIENCE)
  const manifest = buildManifest([...new Set(calls.map((c) => c.tool))])
  const hash = capabilityHash(manifest)

  const pipelineWith = async (cacheSize: number): Promise<DecisionPipeline> =>
    (
      await inProcessPipeline({
        config,
        logger,
        verifier,
        compiler: new CedarCompiler({ cacheSize }),
        snapshot: {
          seq: 0,
          revocations: [],
          agents: [{ tenant: TENANT, agentId: AGENT, capabilityHash: hash }],
          policies: [{ tenant: TENANT, active: { id: `bench-${name}`, version: name, cedar: text, mode: 'enforce' }, candidate: null }],
        },
        manifest,
        hash,
      })
    ).pipeline

  try {
    await verifier.jwks.ready
    const header = b64({ alg: 'EdDSA', typ: 'at+jwt', kid })
    const iat = Math.floor(Date.now() / 1000)
    const claims = {
      iss: ISSUER,
      sub: AGENT,
      agent_id: AGENT,
      client_id: 'cl_bench',
      tenant: TENANT,
      aud: AUDIENCE,
      scope: SCOPES.join(' '),
      iat,
      nbf: iat,
      exp: iat + 600,
      jti: randomBytes(16).toString('base64url'),
      policy_version: name,
      capability_hash: hash,
    }
    const input = `${header}.${b64(claims)}`
    const token = `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`
    const requests = calls.map((c) => ({
      token,
      tool: c.tool,
      params: c.params,
      resource: c.resource,
      dryRun: false,
      override: null,
      clientAddress: '203.0.113.7',
      mode: 'authorize' as const,
    }))
    const uncached = await pipelineWith(0)
    const cached = await pipelineWith(10_000)
    const decisions: Record<string, number> = {}
    for (const r of requests) {
      const o = uncached.decide(r)
      if (o instanceof Promise) throw new Error(`${r.tool}: the pipeline went async on a reused token`)
      decisions[o.decision] = (decisions[o.decision] ?? 0) + 1
    }

    // The bare baseline: the whole bundle preparsed once, Cedar inputs prebuilt for the same calls.
    const psetId = `bench:bare-${name}`
    const pre = cedar.preparsePolicySet(psetId, { staticPolicies: text })
    if (pre.type !== 'success') throw new Error(`${name} failed to preparse`)
    const bare = calls.map((c) => {
      const r = {
        principal: { tenant: TENANT, agentId: AGENT, clientId: 'cl_bench', scopes: SCOPES, capabilities: manifest.capabilities as string[] },
        action: c.tool,
        resource: c.resource,
        params: c.params,
        time: iat,
        clientAddress: '203.0.113.7',
        override: false,
      }
      return {
        principal: { type: 'Agent', id: AGENT },
        action: { type: 'Action', id: c.tool },
        resource: { type: 'Resource', id: c.resource ?? '' },
        context: buildContext(r),
        entities: buildEntities(r, null),
        preparsedPolicySetId: psetId,
      }
    })

    // Alternating rounds, so other load on a shared machine falls on all three alike.
    const ROUND = 512
    const ms = { bare: 0, pipeline: 0, cached: 0 }
    let rounds = 0
    let k = 0
    const run = (fn: () => void): number => {
      const t0 = performance.now()
      for (let i = 0; i < ROUND; i++) fn()
      return performance.now() - t0
    }
    while (ms.bare + ms.pipeline + ms.cached < seconds * 1000) {
      ms.bare += run(() => {
        cedar.statefulIsAuthorized(bare[k++ % bare.length]!)
      })
      ms.pipeline += run(() => {
        uncached.decide(requests[k++ % requests.length]!)
      })
      ms.cached += run(() => {
        cached.decide(requests[k++ % requests.length]!)
      })
      rounds++
    }
    const perSec = (t: number): number => (rounds * ROUND) / (t / 1000)
    return {
      policies: new CedarCompiler().compile({ id: 'count', tenant: TENANT, version: name, cedar: text, mode: 'enforce' }).policyCount,
      barePerSec: perSec(ms.bare),
      pipelinePerSec: perSec(ms.pipeline),
      pipelineCachedPerSec: perSec(ms.cached),
      decisions,
    }
  } finally {
    await close()
  }
}

/** In-process figures for the payments template and the 500-policy bundle. */
export async function benchCedarPipeline(seconds: number): Promise<{ payments: CedarPipelineFigures; bundle500: CedarPipelineFigures }> {
  const payments = await measureBundle('payments', PAYMENTS_TEMPLATE, PAYMENTS_CALLS, seconds)
  const bundle500 = await measureBundle('bundle-500', generatePolicyBundle(500), bundleCalls(256), seconds)
  return { payments, bundle500 }
}

export interface CedarHttpFigures {
  perSec: number
  p50Ms: number
  p99Ms: number
  errors: number
  non2xx: number
}

/** HTTP /v1/authorize, payments template active, reused token, 50 connections, against a gateway process. */
export async function benchCedarHttp(seconds: number): Promise<CedarHttpFigures> {
  const env = await startGatewayEnv()
  let gw: GatewayProcess | undefined
  try {
    await activatePolicy(env, PAYMENTS_TEMPLATE, 'enforce', 'bench-payments')
    const tools = [...new Set(PAYMENTS_CALLS.map((c) => c.tool))]
    const token = await env.token(await env.agent(AGENT, tools, { scopes: ['payments:read', 'payments:write'] }))
    gw = await startGatewayProcess({ issuer: env.issuer, gatewayToken: env.gatewayToken, logLevel: 'warn', gateway: { id: `bench-cedar-${env.tenant}` } })
    // Every call of the mix must be decided by the bundle (not refused), or the figure would measure something else.
    for (const c of PAYMENTS_CALLS) {
      const res = await fetch(`${gw.url}/v1/authorize`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ action: { tool: c.tool, params: c.params }, ...(c.resource ? { resource: c.resource } : {}) }),
      })
      const body = (await res.json()) as { decision?: string; policy_version?: string }
      if (res.status !== 200 || body.policy_version !== 'bench-payments') throw new Error(`${c.tool}: ${res.status} ${JSON.stringify(body)}`)
    }
    const opts = {
      url: `${gw.url}/v1/authorize`,
      connections: 50,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      requests: PAYMENTS_CALLS.map((c) => ({
        method: 'POST' as const,
        body: JSON.stringify({ action: { tool: c.tool, params: c.params }, ...(c.resource ? { resource: c.resource } : {}) }),
      })),
    }
    await autocannon({ ...opts, duration: 2 })
    const r = await autocannon({ ...opts, duration: seconds })
    return { perSec: r.requests.average, p50Ms: r.latency.p50, p99Ms: r.latency.p99, errors: r.errors, non2xx: r.non2xx }
  } finally {
    await gw?.stop()
    await env.close()
  }
}

// `npx tsx bench/pipeline-cedar.ts [seconds]` runs it alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.argv[2] ?? 3)
  const r = await benchCedarPipeline(seconds)
  for (const [name, f] of Object.entries(r)) {
    console.log(
      `${name} (${f.policies} policies): bare statefulIsAuthorized ${f.barePerSec.toFixed(0)}/s; pipeline ${f.pipelinePerSec.toFixed(0)}/s ` +
        `(${((f.pipelinePerSec / f.barePerSec) * 100).toFixed(0)} %; goal ≥ 70 %); with decision cache ${f.pipelineCachedPerSec.toFixed(0)}/s; ` +
        `decisions ${JSON.stringify(f.decisions)}`,
    )
  }
  const h = await benchCedarHttp(seconds)
  console.log(
    `HTTP /v1/authorize, payments template, 50 connections: ${h.perSec.toFixed(0)}/s, p50 ${h.p50Ms} ms, p99 ${h.p99Ms} ms, errors ${h.errors}, ` +
      `non-2xx ${h.non2xx} (goal ≥ 5,000/s, p99 < 10 ms)`,
  )
  process.exit(0)
}
