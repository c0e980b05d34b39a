// Node.js peer of agent/sandbox's benchmarks: one handler/v1 event after another, each in a
// new WebAssembly.Instance of a module compiled once, the way a Node host would isolate
// events. Host functions are plain JavaScript (publish collects, config and device id from
// the arguments, kv and the rest do nothing); WASI functions return 0.
//
//   node node_driver.js MODULE.wasm PAYLOAD_BASE64 DEVICE CONFIG_JSON TOPIC EVENTS WANT_PUBLISHES
//
// Prints one JSON line: {"node": version, "events": n, "mean_ns", "p50_ns", "p99_ns", "rss_bytes"}.
'use strict';
const fs = require('fs');
const [wasmPath, payloadB64, device, configJSON, topic, eventsArg, wantArg] = process.argv.slice(2);
const events = Number(eventsArg), want = Number(wantArg);
const mod = new WebAssembly.Module(fs.readFileSync(wasmPath));
const payload = Buffer.from(payloadB64, 'base64');
const config = JSON.parse(configJSON);
const enc = new TextEncoder(), dec = new TextDecoder();
let inst, published = 0;
const mem = () => new Uint8Array(inst.exports.memory.buffer);
function copyOut(s, buf, cap) {
  const b = enc.encode(s);
  mem().set(b.subarray(0, Math.min(b.length, cap)), buf);
  return b.length;
}
const imports = {
  wasmfleet: {
    event_topic: (buf, cap) => copyOut(topic, buf, cap),
    device_id: (buf, cap) => copyOut(device, buf, cap),
    config_get: (k, kl, buf, cap) => {
      const v = config[dec.decode(mem().subarray(k, k + kl))];
      return v === undefined ? -1 : copyOut(v, buf, cap);
    },
    publish: (t, tl, p, pl) => {
      const m = mem();
      dec.decode(m.subarray(t, t + tl));
      m.slice(p, p + pl);
      published++;
      return 0;
    },
    log: () => {},
    kv_get: () => -1,
    kv_set: () => 0,
    kv_delete: () => 0,
    clock_now: () => 0n,
    random_fill: () => 0,
  },
  wasi_snapshot_preview1: new Proxy({}, { get: () => () => 0 }),
};

function event() {
  published = 0;
  inst = new WebAssembly.Instance(mod, imports);
  if (inst.exports._initialize) inst.exports._initialize();
  const ptr = inst.exports.wasmfleet_alloc(payload.length);
  mem().set(payload, ptr);
  const rc = inst.exports.wasmfleet_handle(ptr, payload.length);
  if (rc !== 0 || published !== want) throw new Error(`handler returned ${rc} with ${published} publishes, want 0 and ${want}`);
}

for (let i = 0; i < Math.min(events, 1000); i++) event(); // warm up the JIT
const times = new Float64Array(events);
for (let i = 0; i < events; i++) {
  const t0 = process.hrtime.bigint();
  event();
  times[i] = Number(process.hrtime.bigint() - t0);
}
const total = times.reduce((a, b) => a + b, 0);
times.sort();
const pct = (p) => times[Math.min(events - 1, Math.floor(p * events))];
console.log(JSON.stringify({
  node: process.version, events, mean_ns: total / events, p50_ns: pct(0.5), p99_ns: pct(0.99),
  rss_bytes: process.memoryUsage().rss,
}));
