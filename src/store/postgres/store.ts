// TODO(#2): PostgreSQL store in progress; this placeholder fails closed.
import { Unavailable } from '../../errors.js'
import type { Logger } from '../../observability/logger.js'
import type { Store } from '../types.js'

export interface PostgresStoreOptions { logger?: Logger; max?: number }

/** Opens the PostgreSQL store (not yet implemented: rejects). */
export async function openPostgresStore(_url: string, _opts: PostgresStoreOptions = {}): Promise<Store> {
  throw new Unavailable('PostgreSQL store not implemented yet')
}
