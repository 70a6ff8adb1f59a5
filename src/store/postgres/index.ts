export { PostgresStore, openPostgresStore, type PostgresStoreOptions } from './store.js'
export { POSTGRES_MIGRATIONS, migratePostgres, LOCK_CLASS, type PgMigration } from './migrations.js'
