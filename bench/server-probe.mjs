// A probe loaded into the benchmarked server with `--import` (bench/fanout.ts puts it in
// BENCH_SERVER_NODE_ARGS): once a second it appends one JSON line to $NKMEDIA_PROBE_FILE with what
// the server's event loop went through in that second: the longest delay of the loop (a timer
// firing late), garbage collection pauses, event-loop utilisation and memory. Costs the server a
// GC observer and one small write a second; it changes nothing else.
// With $NKMEDIA_PROBE_PROFILE set to a file name, SIGUSR2 starts a CPU profile (sampling every
// 1 ms, like --cpu-prof) and the next SIGUSR2 stops it and writes it there: a profile of just the
// measured window (bench/analyze-profile.mjs reads it).
// Each record names its process (pid): loaded with NODE_OPTIONS (bench/lib.ts probeEnv) the probe
// runs in the server and in each of its media workers, all appending to the same file.
// With $NKMEDIA_PROBE_UDP=1 it also counts the datagrams the process's JS handles (dgram 'message'
// events: udp.jsIn) and sends (dgram send calls: udp.jsOut), so far (what the native forwarding plane
// reads and sends itself is in plane.datagrams and plane.forwarded).
// With $NKMEDIA_PROBE_INGRESS=1 it also times every large (> 1000 bytes: the publisher's video)
// datagram the server's JS handles against the RTP timestamp in its clear header (90 kHz, taken
// from the sender's clock): the growth of (handled at - sent at) is the lag the server's loop
// built up, reported as the worst per second (ingressLagMaxMs). Wraps dgram's emit to do it.
import { Socket } from 'node:dgram';
import { appendFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';

const file = process.env.NKMEDIA_PROBE_FILE;
if (file) {
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  // GC kinds (perf_hooks constants): 1 minor (scavenge), 2 major (mark-compact), 4 incremental marking, 8 weak callbacks.
  let gc = { count: 0, ms: 0, maxMs: 0, majorCount: 0, majorMs: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.count++;
      gc.ms += e.duration;
      gc.maxMs = Math.max(gc.maxMs, e.duration);
      if (e.detail?.kind === 2) { gc.majorCount++; gc.majorMs += e.duration; }
    }
  }).observe({ entryTypes: ['gc'] });
  let lagBase = Infinity;
  let lagMax = 0;
  let lastTs = 0;
  if (process.env.NKMEDIA_PROBE_INGRESS === '1') {
    const emit = Socket.prototype.emit;
    Socket.prototype.emit = function (event, msg, ...rest) {
      if (event === 'message' && msg.length > 1000 && msg[0] >= 128 && msg[0] < 192) {
        const ts = msg.readUInt32BE(4);
        if (ts < lastTs) lagBase = Infinity; // the sender started a new stream (its clock restarted)
        lastTs = ts;
        const d = performance.now() - ts / 90;
        if (d < lagBase) lagBase = d;
        lagMax = Math.max(lagMax, d - lagBase);
      }
      return emit.call(this, event, msg, ...rest);
    };
  }
  const udp = { jsIn: 0, jsOut: 0 };
  if (process.env.NKMEDIA_PROBE_UDP === '1') {
    const emit = Socket.prototype.emit;
    Socket.prototype.emit = function (event, ...rest) {
      if (event === 'message') udp.jsIn++;
      return emit.call(this, event, ...rest);
    };
    const send = Socket.prototype.send;
    Socket.prototype.send = function (...args) {
      udp.jsOut++;
      return send.apply(this, args);
    };
  }
  let elu = performance.eventLoopUtilization();
  // The native forwarding plane's counters, when the server runs it (same module instance).
  let plane;
  import(new URL('../dist/engine/local/accel/forwarding-plane.js', import.meta.url).href).then((m) => { plane = m; }, () => undefined);
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const m = process.memoryUsage();
    const rec = {
      t: Date.now(),
      pid: process.pid,
      loopDelayMaxMs: delay.max / 1e6,
      loopDelayP99Ms: delay.percentile(99) / 1e6,
      ingressLagMaxMs: lagMax,
      elu: performance.eventLoopUtilization(now, elu).utilization,
      gc,
      heapUsedMiB: m.heapUsed / 2 ** 20,
      externalMiB: m.external / 2 ** 20,
      arrayBuffersMiB: m.arrayBuffers / 2 ** 20,
      rssMiB: m.rss / 2 ** 20,
      plane: plane?.forwardingPlane()?.counters(),
      udp: { ...udp },
    };
    elu = now;
    lagMax = 0;
    delay.reset();
    gc = { count: 0, ms: 0, maxMs: 0, majorCount: 0, majorMs: 0 };
    try { appendFileSync(file, `${JSON.stringify(rec)}\n`); } catch { /* the benchmark went away */ }
  }, 1000);
  timer.unref();
}

const profileFile = process.env.NKMEDIA_PROBE_PROFILE;
if (profileFile) {
  const session = new Session();
  session.connect();
  const post = (method, params = {}) => new Promise((resolve, reject) => session.post(method, params, (err, r) => (err ? reject(err) : resolve(r))));
  let running = false;
  process.on('SIGUSR2', () => {
    if (!running) {
      running = true;
      void post('Profiler.enable').then(() => post('Profiler.setSamplingInterval', { interval: 1000 })).then(() => post('Profiler.start'));
    } else {
      running = false;
      void post('Profiler.stop').then((r) => writeFileSync(profileFile, JSON.stringify(r.profile)));
    }
  });
}
