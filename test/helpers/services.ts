/**
 * Real PostgreSQL and Redis for tests. Without them a test skips with a
 * message saying what to start; with AEGIS_REQUIRE_SERVICES=1 it fails.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { Redis } from 'ioredis'

export const POSTGRES_URL = process.env.AEGIS_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const REDIS_URL = process.env.AEGIS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const REQUIRED = process.env.AEGIS_REQUIRE_SERVICES === '1'

let pgUp: Promise<boolean> | undefined
let redisUp: Promise<boolean> | undefined

async function probePostgres(): Promise<boolean> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 10000 })
  try {
    await client.connect()
    await client.query('select 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

async function probeRedis(): Promise<boolean> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 10000 })
  r.on('error', () => {})
  try {
    await r.connect()
    await r.ping()
    return true
  } catch {
    return false
  } finally {
    r.disconnect()
  }
}

/**
 * Resolves to a skip reason (string) when PostgreSQL is not reachable and not
 * required; throws when required and missing; resolves false when available.
 * Use as `test('…', { skip: await skipWithoutPostgres() }, …)`.
 */
export async function skipWithoutPostgres(): Promise<string | false> {
  pgUp ??= probePostgres()
  if (await pgUp) return false
  const msg = `PostgreSQL not reachable at ${POSTGRES_URL}: start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)`
  if (REQUIRED) throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${msg}`)
  return msg
}

/** Same as skipWithoutPostgres, for Redis. */
export async function skipWithoutRedis(): Promise<string | false> {
  redisUp ??= probeRedis()
  if (await redisUp) return false
  const msg = `Redis not reachable at ${REDIS_URL}: start it (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no)`
  if (REQUIRED) throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${msg}`)
  return msg
}

/**
 * A fresh PostgreSQL schema for one test run, as a connection URL whose
 * search_path points at it. `drop()` removes it.
 */
export async function freshPostgresSchema(): Promise<{ url: string; schema: string; drop: () => Promise<void> }> {
  const schema = `aegis_test_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: POSTGRES_URL })
  await admin.connect()
  await admin.query(`create schema ${schema}`)
  await admin.end()
  const url = new URL(POSTGRES_URL)
  url.searchParams.set('options', `-c search_path=${schema}`)
  return {
    url: url.toString(),
    schema,
    drop: async () => {
      const c = new pg.Client({ connectionString: POSTGRES_URL })
      await c.connect()
      await c.query(`drop schema if exists ${schema} cascade`)
      await c.end()
    },
  }
}

/** A unique Redis key prefix for one test. */
export function redisPrefix(): string {
  return `aegis-test:${randomBytes(6).toString('hex')}:`
}
