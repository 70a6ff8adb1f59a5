// Prints the README's configuration table from the one schema (src/config/schema.ts).
import { CONFIG_KEYS, envName, type KeySpec } from '../src/config/schema.js'

const rows = (CONFIG_KEYS as readonly KeySpec[]).map((k) => {
  const def = k.default === undefined ? '—' : `\`${JSON.stringify(k.default)}\``
  const type = k.type === 'enum' ? (k.values ?? []).join(' \\| ') : k.type
  return `| \`${envName(k)}\` | \`${k.path}\` | ${type} | ${def} | ${k.doc.replace(/\|/g, '\\|')} |`
})
console.log(['| variable | config file key | type | default | meaning |', '|---|---|---|---|---|', ...rows].join('\n'))
