/**
 * Versioned schema of the PostgreSQL store: the shared migrations in
 * PostgreSQL's dialect, and how they are applied. Table names are
 * unqualified: the store lives in whatever schema the connection's
 * search_path names.
 */
import type pg from 'pg'
import { sqlMigrations, type Migration } from '../sql/migrations.js'

/** A PostgreSQL migration: the same shape as SQLite's. */
export type PgMigration = Migration

/** PostgreSQL's side of the shared schema (../sql/migrations.ts). */
export const POSTGRES_MIGRATIONS: readonly PgMigration[] = sqlMigrations({
  int: 'BIGINT',
  bool: 'BOOLEAN',
  // A sequence never hands out a value twice, even after the row is deleted.
  serialKey: 'BIGSERIAL PRIMARY KEY',
  strict: '',
  nowMs: '(extract(epoch FROM now()) * 1000)::bigint',
})

/**
 * First key of Aegis's two-key advisory locks. tryWithLock uses the one-key
 * (bigint) form, a separate key space, so the two never collide.
 */
export const LOCK_CLASS = 0x4145

/**
 * Applies every migration not yet recorded, each in its own transaction
 * under a transaction-scoped advisory lock, so control planes starting
 * together apply each version exactly once.
 */
export async function migratePostgres(client: pg.ClientBase, migrations: readonly PgMigration[] = POSTGRES_MIGRATIONS): Promise<number[]> {
  const applied: number[] = []
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    await client.query('BEGIN')
    try {
      await client.query("SELECT pg_advisory_xact_lock($1, hashtext('aegis.migrate.' || coalesce(current_schema(), '')))", [LOCK_CLASS])
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)')
      const done = await client.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version])
      if (done.rowCount === 0) {
        await client.query(m.sql)
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()])
        applied.push(m.version)
      }
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    }
  }
  return applied
}
