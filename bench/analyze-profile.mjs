// Summarises a V8 CPU profile (.cpuprofile from --cpu-prof or bench/server-probe.mjs): where the
// time went by area, then the top functions by self time and by inclusive time.
//   node bench/analyze-profile.mjs FILE.cpuprofile [TOP=30]
import { readFileSync } from 'node:fs';

const file = process.argv[2];
const top = Number(process.argv[3] ?? 30);
if (!file) { console.error('usage: node bench/analyze-profile.mjs FILE.cpuprofile [TOP]'); process.exit(2); }
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Time per sampled node (a sample's time is the delta to the next sample).
const dt = p.timeDeltas;
const timeOf = new Map();
p.samples.forEach((id, i) => timeOf.set(id, (timeOf.get(id) ?? 0) + (dt[i + 1] ?? 0)));
const total = [...timeOf.values()].reduce((a, b) => a + b, 0);
const pct = (t) => `${((100 * t) / total).toFixed(1).padStart(5)}%`;

const shortUrl = (u) => u.replace(/^file:\/\//, '').replace(/.*node_modules\//, '').replace(/.*\/(dist|src|bench)\//, '$1/');
const key = (n) => `${n.callFrame.functionName || '(anonymous)'}  ${shortUrl(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
const idle = (n) => n.callFrame.functionName === '(idle)';

// Areas by the innermost frame (self time).
function area(n) {
  const f = n.callFrame.functionName;
  const u = n.callFrame.url;
  if (f === '(idle)') return 'idle (waiting for I/O)';
  if (f === '(garbage collector)') return 'garbage collector';
  if (f === '(program)') return 'V8/native, not attributed (program)';
  if (u.includes('werift')) return 'werift (JS)';
  if (u.includes('/dist/') || u.includes('/src/')) return 'nkmedia server (JS)';
  if (/node:(internal\/)?crypto|internal\/crypto/.test(u)) return 'node crypto (JS side)';
  if (/dgram|internal\/dgram|udp/.test(u)) return 'node dgram (JS side)';
  if (/^node:|internal\//.test(u)) return 'node internals (JS)';
  if (!u) return `native: ${f}`;
  return 'other JS';
}
const areas = new Map();
for (const [id, t] of timeOf) { const a = area(byId.get(id)); areas.set(a, (areas.get(a) ?? 0) + t); }
const busy = total - (areas.get('idle (waiting for I/O)') ?? 0);

console.log(`profile ${file}: ${(total / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms busy (${pct(busy).trim()})`);
console.log('--- by area (self time; % of all samples) ---');
for (const [a, t] of [...areas].sort((x, y) => y[1] - x[1])) console.log(`${pct(t)}  ${a}`);

const self = new Map();
for (const [id, t] of timeOf) { const n = byId.get(id); if (idle(n)) continue; const k = key(n); self.set(k, (self.get(k) ?? 0) + t); }
console.log(`--- top ${top} by self time ---`);
for (const [k, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);

// Inclusive: each function counted once per sample however often it recurs on the stack.
const incl = new Map();
for (const [id, t] of timeOf) {
  if (idle(byId.get(id))) continue;
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur));
    if (seen.has(k)) continue;
    seen.add(k);
    incl.set(k, (incl.get(k) ?? 0) + t);
  }
}
console.log(`--- top ${top + 15} by inclusive time ---`);
for (const [k, t] of [...incl].sort((a, b) => b[1] - a[1]).filter(([k]) => !/^\((root|program)\)/.test(k)).slice(0, top + 15)) console.log(`${pct(t)}  ${k}`);
