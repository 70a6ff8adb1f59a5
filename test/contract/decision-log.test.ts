import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openPostgresStore, openSqliteStore } from '../../src/store/index.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../helpers/services.js'
import { decisionLogContract } from './decision-log.js'

decisionLogContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-decisions-'))
  const store = await openSqliteStore(join(dir, 'aegis.db'))
  return {
    store,
    cleanup: async () => {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
})

const pgSkip = await skipWithoutPostgres()
decisionLogContract(
  'postgres',
  async () => {
    const schema = await freshPostgresSchema()
    try {
      const store = await openPostgresStore(schema.url)
      return {
        store,
        cleanup: async () => {
          await store.close()
          await schema.drop()
        },
      }
    } catch (err) {
      await schema.drop()
      throw err
    }
  },
  { skip: pgSkip },
)
