/**
 * `npm run bench`: every benchmark, each figure beside a baseline measured in
 * the same run (raw node:crypto Ed25519 sign/verify, bare Cedar, direct MCP
 * calls), so the ratios mean something on a shared, noisy machine. Prints a
 * Markdown table and writes it to bench/results.md; `npx tsx
 * scripts/update-readme.ts` copies it into the README.
 *
 * AEGIS_BENCH_SECONDS sets the measuring time per figure (default 10). The
 * side-by-side rows (issuance against node-oidc-provider, /v1/authorize
 * against bare fastify) run three alternating rounds of half that (at least
 * 5 s) for each side and print the median ratio with its spread. `npm run
 * bench -- issuance gateway` runs only the named parts.
 */
import { writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { ed25519Baseline, fmt, ratiosOf, ratioWithSpread } from './util.js'

const seconds = Number(process.env.AEGIS_BENCH_SECONDS ?? 10)
const only = new Set(process.argv.slice(2))
const want = (name: string): boolean => only.size === 0 || only.has(name)

interface Row {
  what: string
  result: string
  baseline: string
  ratio: string
  goal: string
}
const rows: Row[] = []
const ms = (v: number): string => `${v.toFixed(v < 1 ? 3 : 1)} ms`
const log = (s: string): void => {
  process.stderr.write(`${s}\n`)
}

const loadBefore = loadavg()[0]!
log(`bench: ${seconds} s per figure on ${cpus().length} cores (load average ${loadBefore.toFixed(2)})`)

if (want('issuance')) {
  const { benchIssuance } = await import('./issuance.js')
  log('bench: token issuance over HTTP, beside node-oidc-provider in alternating rounds…')
  const base = ed25519Baseline(2)
  const side = await benchIssuance(Math.max(5, seconds / 2))
  const r = side.aegis
  const o = side.oidc
  const errors = (x: { non2xx: number; errors: number }): string => (x.non2xx + x.errors > 0 ? `, ${x.non2xx} non-2xx, ${x.errors} errors` : '')
  const failed = side.rounds.reduce((n, x) => n + x.ours.non2xx + x.ours.errors, 0)
  const cpu = (x: { serverCpuUsPerToken: number }): string =>
    Number.isFinite(x.serverCpuUsPerToken) ? `, ${x.serverCpuUsPerToken.toFixed(0)} µs CPU/token` : ''
  rows.push({
    what: 'token issuance, HTTP, 50 connections, audit on, SQLite',
    result: `${fmt(r.tokensPerSec)}/s, p50 ${ms(r.p50Ms)}, p99 ${ms(r.p99Ms)}${cpu(r)}${failed > 0 ? `, ${failed} failed over the rounds` : ''}`,
    baseline: `raw Ed25519 sign ${fmt(base.signPerSec)}/s`,
    ratio: `${(r.tokensPerSec / base.signPerSec).toFixed(2)}×`,
    goal: '≥ 8,000/s, p99 < 15 ms',
  })
  const cpuRatios = ratiosOf(side.rounds, (x) => x.serverCpuUsPerToken)
  rows.push({
    what:
      'token issuance against node-oidc-provider, same load (client_credentials, EdDSA at+jwt, in-memory), ' +
      `${side.rounds.length} alternating rounds of ${fmt(r.seconds)} s`,
    result: `Aegis ${fmt(r.tokensPerSec)}/s, p99 ${ms(r.p99Ms)}${cpu(r)}`,
    baseline: `node-oidc-provider ${o.version}: ${fmt(o.tokensPerSec)}/s, p99 ${ms(o.p99Ms)}${cpu(o)}${errors(o)}`,
    ratio: `${ratioWithSpread(side.rounds)}; CPU/token ${ratioWithSpread(cpuRatios)}`,
    goal: '≥ 2.5×, p99 < 10 ms',
  })
}

if (want('verify')) {
  const { benchVerify } = await import('./verify.js')
  log('bench: verifier…')
  const r = await benchVerify(Math.min(seconds, 5))
  const n = await benchVerify(Math.min(seconds, 5), 'node:crypto')
  rows.push({
    what: `aegis/verify, new token each call (Ed25519 by ${r.backend}, the default)`,
    result: `${fmt(r.verifierColdPerSec)}/s`,
    baseline: `raw Ed25519 verify ${fmt(r.rawVerifyPerSec)}/s`,
    ratio: `${(r.verifierColdPerSec / r.rawVerifyPerSec).toFixed(2)}×`,
    goal: '≥ 0.80×',
  })
  rows.push({
    what: "aegis/verify, new token each call (Ed25519 by node:crypto, `ed25519: 'node:crypto'`)",
    result: `${fmt(n.verifierColdPerSec)}/s`,
    baseline: `raw Ed25519 verify ${fmt(n.rawVerifyPerSec)}/s`,
    ratio: `${(n.verifierColdPerSec / n.rawVerifyPerSec).toFixed(2)}×`,
    goal: '—',
  })
  rows.push({
    what: 'aegis/verify, reused token (verified-token cache)',
    result: `${fmt(r.verifierCachedPerSec)}/s`,
    baseline: `raw Ed25519 verify ${fmt(r.rawVerifyPerSec)}/s`,
    ratio: `${(r.verifierCachedPerSec / r.rawVerifyPerSec).toFixed(1)}×`,
    goal: '≥ 10×',
  })
}

if (want('gateway')) {
  const { benchGateway } = await import('./gateway.js')
  log('bench: gateway pipeline, HTTP and revocation propagation…')
  const r = await benchGateway(Math.min(seconds, 10))
  const raw = `raw Ed25519 verify ${fmt(r.rawVerifyPerSec)}/s`
  rows.push({
    what: `gateway pipeline in process, new token each call (verify + deny list + strict policy; Ed25519 by ${r.backend}, the default)`,
    result: `${fmt(r.pipelineFreshPerSec)}/s`,
    baseline: raw,
    ratio: `${(r.pipelineFreshPerSec / r.rawVerifyPerSec).toFixed(2)}×`,
    goal: '≥ 0.80×',
  })
  const nc = r.pipelineFreshNodeCrypto
  rows.push({
    what: 'gateway pipeline in process, new token each call, Ed25519 by node:crypto',
    result: `${fmt(nc.freshPerSec)}/s`,
    baseline: `raw Ed25519 verify ${fmt(nc.rawVerifyPerSec)}/s`,
    ratio: `${(nc.freshPerSec / nc.rawVerifyPerSec).toFixed(2)}×`,
    goal: '—',
  })
  rows.push({
    what: 'gateway pipeline in process, reused token',
    result: `${fmt(r.pipelineReusedPerSec)}/s`,
    baseline: raw,
    ratio: `${(r.pipelineReusedPerSec / r.rawVerifyPerSec).toFixed(1)}×`,
    goal: '≥ 10×',
  })
  const h = r.http
  const failures = (f: { errors: number; non2xx: number }): string => (f.non2xx + f.errors > 0 ? `, ${f.non2xx} non-2xx, ${f.errors} errors` : '')
  const cpuUs = (f: { serverCpuUs: number }): string => (Number.isFinite(f.serverCpuUs) ? `, ${f.serverCpuUs.toFixed(1)} µs CPU/request` : '')
  rows.push({
    what:
      'HTTP /v1/authorize, reused token, 50 connections, full speed (autocannon, closed loop), ' +
      `${h.rounds.length} alternating rounds of ${fmt(h.rounds[0]?.ours.seconds ?? NaN)} s`,
    result: `${fmt(h.max.perSec)}/s, p50 ${ms(h.max.p50Ms)}, p99 ${ms(h.max.p99Ms)}${cpuUs(h.max)}${failures(h.max)}`,
    baseline: `bare fastify, same body: ${fmt(h.bare.max.perSec)}/s, p99 ${ms(h.bare.max.p99Ms)}${cpuUs(h.bare.max)}`,
    ratio: `${ratioWithSpread(h.rounds)}; CPU/request ${ratioWithSpread(ratiosOf(h.rounds, (x) => x.serverCpuUs))}`,
    goal: '≥ 0.5× bare fastify; CPU ≤ 2×',
  })
  const rl = h.remoteLog
  rows.push({
    what:
      'HTTP /v1/authorize as above, decision log sent to a stand-in for a control plane on other machines (acknowledged, not stored), ' +
      `${rl.rounds.length} alternating rounds`,
    result: `${fmt(rl.max.perSec)}/s, p50 ${ms(rl.max.p50Ms)}, p99 ${ms(rl.max.p99Ms)}${cpuUs(rl.max)}${failures(rl.max)}`,
    baseline: `bare fastify, same body: ${fmt(rl.bare.perSec)}/s, p99 ${ms(rl.bare.p99Ms)}${cpuUs(rl.bare)}`,
    ratio: `${ratioWithSpread(rl.rounds)}; CPU/request ${ratioWithSpread(ratiosOf(rl.rounds, (x) => x.serverCpuUs))}`,
    goal: '—',
  })
  const { benchWorkers } = await import('./gateway.js')
  log('bench: /v1/authorize with 1 and 2 gateway workers…')
  const w = await benchWorkers(Math.min(seconds, 10), [1, 2])
  if (w) {
    const one = w[0]!.figures
    for (const { workers, figures } of w)
      rows.push({
        what: `HTTP /v1/authorize, reused token, 50 connections, full speed, ${workers} gateway worker${workers > 1 ? 's' : ''} (Redis replay cache)`,
        result:
          `${fmt(figures.perSec)}/s, p50 ${ms(figures.p50Ms)}, p99 ${ms(figures.p99Ms)}${cpuUs(figures)}${failures(figures)}; ` +
          `load generator CPU ${figures.loadGenCpuPct.toFixed(0)} %`,
        baseline: `1 worker: ${fmt(one.perSec)}/s`,
        ratio: `${(figures.perSec / one.perSec).toFixed(2)}×`,
        goal: '—',
      })
  }
  rows.push({
    what: `HTTP /v1/authorize, reused token, 50 connections, ${fmt(h.atGoalRate.offered)}/s offered (open loop, latency from when each request was due)`,
    result: `${fmt(h.atGoalRate.perSec)}/s, p50 ${ms(h.atGoalRate.p50Ms)}, p99 ${ms(h.atGoalRate.p99Ms)}${failures(h.atGoalRate)}`,
    baseline: `bare fastify, same load: p50 ${ms(h.bare.atGoalRate.p50Ms)}, p99 ${ms(h.bare.atGoalRate.p99Ms)}`,
    ratio: `p99 ${(h.atGoalRate.p99Ms / h.bare.atGoalRate.p99Ms).toFixed(2)}×`,
    goal: 'p99 < 5 ms at 12,000/s',
  })
  if (r.propagation.redis)
    rows.push({
      what: `revocation propagation to 3 gateways, Redis (${r.propagation.redis.samples} revocations)`,
      result: `p50 ${ms(r.propagation.redis.p50Ms)}, p99 ${ms(r.propagation.redis.p99Ms)}`,
      baseline: '—',
      ratio: '—',
      goal: 'p99 < 100 ms',
    })
  rows.push({
    what: `revocation propagation to 3 gateways, SSE (${r.propagation.sse.samples} revocations)`,
    result: `p50 ${ms(r.propagation.sse.p50Ms)}, p99 ${ms(r.propagation.sse.p99Ms)}`,
    baseline: '—',
    ratio: '—',
    goal: 'p99 < 1 s',
  })
}

// Beside revocation propagation: `npm run bench -- rotation startup` runs these alone.
if (want('rotation')) {
  const { benchEmergencyRotation } = await import('./keys-feed.js')
  const { skipWithoutRedis } = await import('../test/helpers/services.js')
  log('bench: emergency rotation until every gateway accepts the new key…')
  const samples = Math.max(10, Math.min(50, seconds * 3))
  for (const redis of (await skipWithoutRedis()) === false ? [true, false] : [false]) {
    const r = await benchEmergencyRotation(redis, samples)
    rows.push({
      what:
        `emergency rotation → new key accepted at every gateway, 3 gateways, ${redis ? 'Redis' : 'SSE'} (${r.samples} rotations, from the ` +
        `rotation's answer)`,
      result: `p50 ${ms(r.p50Ms)}, p99 ${ms(r.p99Ms)}`,
      baseline: '—',
      ratio: '—',
      goal: 'p99 < 1 s',
    })
  }
}

if (want('startup')) {
  const { benchGatewayStartup } = await import('./keys-feed.js')
  log('bench: gateway start until the first accepted token, 0 / 10,000 / 100,000 revocations in force…')
  for (const f of await benchGatewayStartup()) {
    const what = `gateway start → first accepted token, ${fmt(f.revocations)} revocations and ${fmt(f.revocations)} agents in force (aegis serve, median of 3)`
    rows.push({
      what,
      result: `SSE ${ms(f.sse)}${f.redis === null ? '' : `, Redis ${ms(f.redis)}`}`,
      baseline: '—',
      ratio: '—',
      goal: f.revocations === 100_000 ? '< 2 s' : '—',
    })
  }
}

if (want('policy')) {
  const { benchPolicy } = await import('./policy.js')
  log('bench: Cedar policy evaluation…')
  const r = await benchPolicy(Math.min(seconds, 5))
  for (const [name, f] of Object.entries(r.templates)) {
    rows.push({
      what: `policy evaluate, ${name} template (${f.policies} policies)`,
      result: `p50 ${ms(f.p50Ms)}, p99 ${ms(f.p99Ms)}`,
      baseline: '—',
      ratio: '—',
      goal: 'p99 < 0.5 ms',
    })
  }
  rows.push({
    what: `policy evaluate, ${r.bundle500.policies}-policy bundle (sliced by action)`,
    result: `p50 ${ms(r.bundle500.p50Ms)}, p99 ${ms(r.bundle500.p99Ms)}, ${fmt(r.bundle500.perSec)}/s`,
    baseline: `bare statefulIsAuthorized ${fmt(r.bareStatefulPerSec)}/s`,
    ratio: `${(r.bundle500.perSec / r.bareStatefulPerSec).toFixed(1)}×`,
    goal: 'p99 < 1 ms',
  })
  rows.push({
    what: `policy evaluate, ${r.bundle500.policies}-policy bundle, repeated call (decision cache)`,
    result: `p50 ${ms(r.bundle500Cached.p50Ms)}, p99 ${ms(r.bundle500Cached.p99Ms)}`,
    baseline: `bare statefulIsAuthorized ${fmt(r.bareStatefulPerSec)}/s`,
    ratio: `${(r.bundle500Cached.perSec / r.bareStatefulPerSec).toFixed(0)}×`,
    goal: '—',
  })
}

if (want('pipeline-cedar')) {
  const { benchCedarHttp, benchCedarPipeline } = await import('./pipeline-cedar.js')
  log('bench: decision pipeline with Cedar, in process and over HTTP…')
  const r = await benchCedarPipeline(Math.min(seconds, 10))
  const pct = (v: number, base: number): string => `${((v / base) * 100).toFixed(0)} %`
  for (const [name, f] of [
    ['payments template', r.payments],
    ['500-policy bundle', r.bundle500],
  ] as const) {
    const baseline = `bare statefulIsAuthorized ${fmt(f.barePerSec)}/s (same bundle and calls)`
    rows.push({
      what: `gateway pipeline in process with Cedar, ${name} (${f.policies} policies), reused token, decision cache off`,
      result: `${fmt(f.pipelinePerSec)}/s`,
      baseline,
      ratio: pct(f.pipelinePerSec, f.barePerSec),
      goal: '≥ 70 %',
    })
    rows.push({
      what: `gateway pipeline in process with Cedar, ${name}, reused token, decision cache on`,
      result: `${fmt(f.pipelineCachedPerSec)}/s`,
      baseline,
      ratio: pct(f.pipelineCachedPerSec, f.barePerSec),
      goal: '—',
    })
  }
  const { benchDelegation } = await import('./delegation.js')
  log('bench: a decision with a three-hop delegation chain beside a plain token…')
  const d = await benchDelegation(Math.min(seconds, 10))
  rows.push({
    what: 'gateway pipeline in process with Cedar, payments template, decision cache off: a token carrying a three-hop delegation chain (four agents checked)',
    result: `${fmt(d.chainPerSec)}/s`,
    baseline: `the agent's own token ${fmt(d.plainPerSec)}/s (same calls, alternating rounds)`,
    ratio: pct(d.chainPerSec, d.plainPerSec),
    goal: '≥ 90 %',
  })
  const h = await benchCedarHttp(Math.min(seconds, 10))
  rows.push({
    what: 'HTTP /v1/authorize, payments template active, reused token, 50 connections',
    result: `${fmt(h.perSec)}/s, p50 ${ms(h.p50Ms)}, p99 ${ms(h.p99Ms)}${h.non2xx + h.errors > 0 ? `, ${h.non2xx} non-2xx, ${h.errors} errors` : ''}`,
    baseline: `bare statefulIsAuthorized ${fmt(r.payments.barePerSec)}/s`,
    ratio: `${(h.perSec / r.payments.barePerSec).toFixed(2)}×`,
    goal: '≥ 5,000/s, p99 < 10 ms',
  })
}

if (want('proxy')) {
  const { benchProxy } = await import('./proxy.js')
  log('bench: reverse-proxy calls through the gateway…')
  const r = await benchProxy(Math.min(seconds, 5))
  rows.push({
    what: 'reverse-proxy JSON POST through the gateway (query string + JSON body, Cedar, sequential)',
    result: `p50 ${ms(r.gateway.p50Ms)}, p99 ${ms(r.gateway.p99Ms)}; added p50 ${ms(r.addedPairedP50Ms)}`,
    baseline: `direct p50 ${ms(r.direct.p50Ms)}, p99 ${ms(r.direct.p99Ms)}`,
    ratio: `${r.ratioP50.toFixed(2)}×`,
    goal: 'adds < 1 ms at p50',
  })
}

if (want('mcp')) {
  const { benchMcp } = await import('./mcp.js')
  log('bench: MCP tools/call through the gateway…')
  const r = await benchMcp(Math.min(seconds, 5))
  for (const [flavor, f] of [
    ['JSON', r.json],
    ['SSE', r.sse],
  ] as const) {
    rows.push({
      what: `MCP tools/call through the gateway (${flavor} responses, sequential)`,
      result: `p50 ${ms(f.gateway.p50Ms)}, p99 ${ms(f.gateway.p99Ms)}; added p50 ${ms(f.addedPairedP50Ms)}`,
      baseline: `direct p50 ${ms(f.direct.p50Ms)}, p99 ${ms(f.direct.p99Ms)}`,
      ratio: `${f.ratioP50.toFixed(2)}×`,
      goal: flavor === 'JSON' ? 'adds < 1 ms at p50' : '—',
    })
  }
}

// Filling the tables takes minutes at the default 10,000,000 rows each; AEGIS_BENCH_LOG_ROWS sets another count.
if (want('log-queries')) {
  const { benchLogQueries } = await import('./log-queries.js')
  const { POSTGRES_URL, skipWithoutPostgres } = await import('../test/helpers/services.js')
  if ((await skipWithoutPostgres()) === false) {
    log('bench: audit and decision log queries on PostgreSQL (creates, fills and drops its own database; minutes)…')
    const r = await benchLogQueries(POSTGRES_URL)
    log(`bench: ${r.reused ? 'reused' : 'filled'} ${fmt(r.rows)} rows per table in ${r.fillSeconds.toFixed(0)} s (database ${r.database})`)
    for (const f of r.figures) {
      rows.push({
        what:
          `GET /admin/v1/${f.table === 'audit_events' ? 'audit' : 'decisions'} first page (100), ${f.filter}, ${fmt(r.rows)} rows, PostgreSQL ` +
          `(${f.samples} runs; plan: ${f.plan})`,
        result: `p50 ${ms(f.p50Ms)}, p99 ${ms(f.p99Ms)}`,
        baseline: '—',
        ratio: '—',
        goal: '< 5 ms',
      })
    }
  } else log('bench: log-queries skipped: PostgreSQL not reachable')
}

const header =
  `Measured by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores ` +
  `(${cpus()[0]?.model.trim() ?? 'unknown CPU'}), Node ${process.version}, load average ${loadBefore.toFixed(2)} at start, ${seconds} s per ` +
  `figure. Ratios compare with a baseline measured in the same run.`
if (want('decision-log')) {
  const { benchDecisionLogCost, benchIngest } = await import('./decision-log.js')
  log("bench: decision log on vs off, and the control plane's ingest rate…")
  const c = await benchDecisionLogCost(Math.min(seconds, 10) * 3)
  rows.push({
    what: 'gateway HTTP /v1/authorize, reused token, 50 connections, decision log on (uploading to a stand-in for a remote control plane)',
    result: `${fmt(c.onRemotePerSec)}/s`,
    baseline: `decision log off ${fmt(c.offPerSec)}/s, same run, rotating rounds`,
    ratio: `${((c.onRemotePerSec / c.offPerSec) * 100).toFixed(1)} %`,
    goal: '≥ 90 %',
  })
  rows.push({
    what:
      'gateway HTTP /v1/authorize, reused token, 50 connections, decision log on (uploading to the control plane on this machine, which stores ' +
      'every decision)',
    result: `${fmt(c.onPerSec)}/s (${fmt(c.stored)} stored, ${fmt(c.dropped)} dropped)`,
    baseline: `decision log off ${fmt(c.offPerSec)}/s, same run, rotating rounds`,
    ratio: `${((c.onPerSec / c.offPerSec) * 100).toFixed(1)} %`,
    goal: '—',
  })
  for (const db of ['sqlite', 'postgres'] as const) {
    const r = await benchIngest(Math.min(seconds, 5), db)
    rows.push({
      what: `control plane decision-log ingest, gzip batches of 500, 4 uploads in flight, ${db === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`,
      result:
        r === null
          ? 'skipped (PostgreSQL not reachable)'
          : `${fmt(r.storedPerSec)} decisions stored/s, ${r.cpuUsPerDecision.toFixed(1)} µs CPU per decision in the control plane's process` +
            (db === 'sqlite' ? `, ${r.writeCallsPerDecision.toFixed(2)} write calls and ${fmt(r.writtenBytesPerDecision)} bytes written per decision` : ''),
      baseline: '—',
      ratio: '—',
      goal: '—',
    })
  }
}

if (want('audit-append')) {
  const { benchAuditAppend } = await import('./audit-append.js')
  log('bench: storing audit events on SQLite, through the store and into a table with only its key…')
  for (const f of await benchAuditAppend()) {
    rows.push({
      what: `audit event stored on SQLite (one per token issued), batches of 50, ${f.shape}`,
      result: `${f.storeUsPerEvent.toFixed(1)} µs CPU per event (store: its INSERT, 5 query indexes, time mark)`,
      baseline: `the same rows into a table with only its primary key: ${f.bareUsPerEvent.toFixed(1)} µs`,
      ratio: `${(f.storeUsPerEvent / f.bareUsPerEvent).toFixed(2)}×`,
      goal: '—',
    })
  }
}

const table = [
  header,
  '',
  '| what | result | baseline (same run) | ratio | goal |',
  '|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.what} | ${r.result} | ${r.baseline} | ${r.ratio} | ${r.goal} |`),
].join('\n')
console.log(table)
if (only.size === 0) writeFileSync(new URL('./results.md', import.meta.url), `${table}\n`)
process.exit(0)
