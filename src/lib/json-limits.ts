/** Default bounds on untrusted JSON. */
export const MAX_JSON_DEPTH = 32

/**
 * Depth of a parsed JSON value (a scalar or an empty container is 0, `{"a":1}`
 * is 1). Stops descending past `limit + 1`, so recursion stays bounded
 * whatever the input. Allocates nothing: it runs on every request body and
 * every fresh token.
 */
export function jsonDepth(value: unknown, limit = MAX_JSON_DEPTH): number {
  return depthOf(value, 0, limit)
}

function depthOf(value: unknown, depth: number, limit: number): number {
  if (value === null || typeof value !== 'object') return depth
  if (depth > limit) return depth
  let max = depth
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const d = depthOf(value[i], depth + 1, limit)
      if (d > max) max = d
      if (max > limit) return max
    }
    return max
  }
  const record = value as Record<string, unknown>
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue
    const d = depthOf(record[key], depth + 1, limit)
    if (d > max) max = d
    if (max > limit) return max
  }
  return max
}
