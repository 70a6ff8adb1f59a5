export { SqliteStore, openSqliteStore, type SqliteStoreOptions } from './store.js'
export { SQLITE_MIGRATIONS, migrateSqlite, type Migration } from './migrations.js'
