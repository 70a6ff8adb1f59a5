/** Default bounds on untrusted JSON. */
export const MAX_JSON_DEPTH = 32

/** Depth of a parsed JSON value (a scalar is 0). Stops counting past `limit + 1`. */
export function jsonDepth(value: unknown, limit = MAX_JSON_DEPTH): number {
  let max = 0
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [v, d] = stack.pop()!
    if (d > max) max = d
    if (max > limit) return max
    if (v !== null && typeof v === 'object') {
      for (const child of Object.values(v as Record<string, unknown>)) stack.push([child, d + 1])
    }
  }
  return max
}
