/** The revocation source: recording, matching, the feed snapshot. */
export { recordRevocation, findRevocation, findRevocationOfAny, revocationExpiry, revocationJson, type NewRevocation, type RecordOptions } from './service.js'
export { revocationMatches } from './match.js'
export { parseRevocation } from './validate.js'
export { buildFeedSnapshot, SnapshotCache, SNAPSHOT_PAGE_ENTRIES, type PagedSnapshot } from './snapshot.js'
