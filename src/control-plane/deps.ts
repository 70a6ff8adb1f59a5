import type { AegisConfig } from '../config/schema.js'
import type { Clock } from '../lib/clock.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import type { Store } from '../store/types.js'
import type { ReplayCache } from '../store/replay-cache.js'
import type { FeedPublisher } from './feed/events.js'
import type { SessionResolver } from '../http/admin-auth.js'
import type { KeyManager } from './keys/types.js'
import type { AuditWriter } from './audit/types.js'

/**
 * What every control-plane module gets. Admin route plugins have the shape
 * `(app: FastifyInstance, deps: ControlPlaneDeps) => Promise<void>` and are
 * registered by control-plane/app.ts under `/admin/v1`.
 */
export interface ControlPlaneDeps {
  config: AegisConfig
  store: Store
  keys: KeyManager
  audit: AuditWriter
  metrics: Metrics
  logger: Logger
  clock: Clock
  feed: FeedPublisher
  /** Single-use registry for private_key_jwt assertions and DPoP proofs at the token endpoint. */
  replay: ReplayCache
  /** Console session cookies count as admin authentication. */
  sessions?: SessionResolver
}
