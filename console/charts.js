// Tiny SVG line charts for the console: no chart library, no inline styles (CSP).
const NS = 'http://www.w3.org/2000/svg'
const W = 600
const H = 160
const PAD = { left: 40, right: 8, top: 24, bottom: 22 }

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (text !== undefined) e.textContent = text
  return e
}

/**
 * Draws `series` ([{ name, values }], equally spaced, oldest first) into `svg`,
 * replacing what was there. Series get the classes s0, s1, … for colour.
 */
export function drawChart(svg, series) {
  svg.replaceChildren()
  const n = Math.max(1, ...series.map((s) => s.values.length))
  const max = Math.max(1, ...series.flatMap((s) => s.values))
  const x = (i) => PAD.left + (i / Math.max(1, n - 1)) * (W - PAD.left - PAD.right)
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom)
  svg.append(el('line', { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, class: 'axis' }))
  svg.append(el('line', { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, class: 'axis' }))
  svg.append(el('line', { x1: PAD.left, y1: y(max), x2: W - PAD.right, y2: y(max), class: 'grid' }))
  svg.append(el('text', { x: PAD.left - 4, y: y(max) + 4, class: 'tick end' }, String(max)))
  svg.append(el('text', { x: PAD.left - 4, y: H - PAD.bottom + 4, class: 'tick end' }, '0'))
  svg.append(el('text', { x: PAD.left, y: H - 6, class: 'tick' }, '−60 min'))
  svg.append(el('text', { x: W - PAD.right, y: H - 6, class: 'tick end' }, 'now'))
  let lx = PAD.left + 8
  series.forEach((s, k) => {
    const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ')
    svg.append(el('polyline', { points: pts, class: `line s${k % 6}` }))
    const label = `${s.name}: ${s.values.reduce((a, b) => a + b, 0)}`
    svg.append(el('rect', { x: lx, y: 3, width: 10, height: 10, class: `key s${k % 6}` }))
    svg.append(el('text', { x: lx + 14, y: 12, class: 'legend' }, label))
    lx += 30 + label.length * 7
  })
}
