/**
 * A delegated token's decision beside a plain one's (issue 18): the gateway
 * pipeline in process with the payments template (which reads
 * `context.delegation`), decision cache off so every call reaches Cedar, a
 * reused token either way; one token is the agent's own, the other carries a
 * three-hop chain (`act` nested three deep: four agents, each checked against
 * the deny list and its capability hash, and `context.delegation` built for
 * Cedar). Alternating rounds of the same run. Goal: the chain's rate within
 * 10 % of the plain token's.
 */
import { randomBytes, sign } from 'node:crypto'
import { buildManifest, capabilityHash } from '../src/lib/capability.js'
import { actClaim } from '../src/lib/delegation.js'
import { CedarCompiler } from '../src/policy/cedar/engine.js'
import { benchVerifier, inProcessPipeline } from './in-process-pipeline.js'
import { PAYMENTS_CALLS, PAYMENTS_TEMPLATE } from './pipeline-cedar.js'

const ISSUER = 'https://aegis.bench'
const AUDIENCE = 'aegis-gateway'
const TENANT = 'acme'
const CHAIN = ['billing-bot', 'planner-1', 'worker-2', 'leaf-3']

export interface DelegationFigures {
  plainPerSec: number
  chainPerSec: number
  /** Decisions of the chain token's mix, by kind (must equal the plain one's). */
  decisions: Record<string, number>
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

export async function benchDelegation(seconds: number): Promise<DelegationFigures> {
  const { privateKey, kid, config, verifier, logger, close } = await benchVerifier(ISSUER, AUDIENCE)
  const manifest = buildManifest([...new Set(PAYMENTS_CALLS.map((c) => c.tool))])
  const hash = capabilityHash(manifest)
  try {
    const { pipeline } = await inProcessPipeline({
      config,
      logger,
      verifier,
      compiler: new CedarCompiler({ cacheSize: 0 }),
      snapshot: {
        seq: 0,
        revocations: [],
        agents: CHAIN.map((agentId) => ({ tenant: TENANT, agentId, capabilityHash: hash })),
        policies: [{ tenant: TENANT, active: { id: 'bench-delegation', version: 'payments', cedar: PAYMENTS_TEMPLATE, mode: 'enforce' }, candidate: null }],
      },
      manifest,
      hash,
    })
    await verifier.jwks.ready

    const header = b64({ alg: 'EdDSA', typ: 'at+jwt', kid })
    const iat = Math.floor(Date.now() / 1000)
    const mint = (extra: Record<string, unknown>): string => {
      const claims = {
        iss: ISSUER,
        sub: CHAIN[0],
        agent_id: CHAIN[0],
        client_id: 'cl_bench',
        tenant: TENANT,
        aud: AUDIENCE,
        scope: 'payments:read payments:write',
        iat,
        nbf: iat,
        exp: iat + 600,
        jti: randomBytes(16).toString('base64url'),
        policy_version: 'payments',
        capability_hash: hash,
        ...extra,
      }
      const input = `${header}.${b64(claims)}`
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`
    }
    const plain = mint({})
    const chained = mint({ act: actClaim(CHAIN.slice(1)), delegation: { hashes: CHAIN.map(() => hash) } })
    const requestsOf = (token: string) =>
      PAYMENTS_CALLS.map((c) => ({
        token,
        tool: c.tool,
        params: c.params,
        resource: c.resource,
        dryRun: false,
        override: null,
        clientAddress: '203.0.113.7',
        mode: 'authorize' as const,
      }))
    const plainRequests = requestsOf(plain)
    const chainRequests = requestsOf(chained)
    const decisions: Record<string, number> = {}
    for (const [i, r] of chainRequests.entries()) {
      const o = pipeline.decide(r)
      const p = pipeline.decide(plainRequests[i]!)
      if (o instanceof Promise || p instanceof Promise) throw new Error(`${r.tool}: the pipeline went async on a reused token`)
      // The chain must be decided, not refused, and decided as the plain token is (the mix names no person).
      if (o.decision !== p.decision) throw new Error(`${r.tool}: chain ${o.decision}, plain ${p.decision}`)
      decisions[o.decision] = (decisions[o.decision] ?? 0) + 1
    }

    // Short rounds: on a shared machine a burst of other load then falls on both alike.
    const ROUND = 128
    const ms = { plain: 0, chain: 0 }
    let rounds = 0
    let k = 0
    const run = (reqs: typeof plainRequests): number => {
      const t0 = performance.now()
      for (let i = 0; i < ROUND; i++) pipeline.decide(reqs[k++ % reqs.length]!)
      return performance.now() - t0
    }
    while (ms.plain + ms.chain < seconds * 1000) {
      // Which goes first alternates too: the second of a pair runs on a warmer cache.
      if (rounds % 2 === 0) {
        ms.plain += run(plainRequests)
        ms.chain += run(chainRequests)
      } else {
        ms.chain += run(chainRequests)
        ms.plain += run(plainRequests)
      }
      rounds++
    }
    const perSec = (t: number): number => (rounds * ROUND) / (t / 1000)
    return { plainPerSec: perSec(ms.plain), chainPerSec: perSec(ms.chain), decisions }
  } finally {
    await close()
  }
}

// `npx tsx bench/delegation.ts [seconds]` runs it alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchDelegation(Number(process.argv[2] ?? 3))
  console.log(
    `plain token ${r.plainPerSec.toFixed(0)}/s; three-hop chain ${r.chainPerSec.toFixed(0)}/s ` +
      `(${((r.chainPerSec / r.plainPerSec) * 100).toFixed(1)} %; goal ≥ 90 %); decisions ${JSON.stringify(r.decisions)}`,
  )
  process.exit(0)
}
