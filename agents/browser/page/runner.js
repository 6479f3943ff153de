// The in-page half of the browser driver: loads one onnxruntime-web bundle,
// creates sessions with one execution provider, and times runs with
// performance.now() (5 us resolution in a cross-origin isolated page). The
// Python runner calls these functions one step at a time and applies the
// measurement policy's stop rule between batches.

const TYPED = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, int8: Int8Array, uint8: Uint8Array,
  int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array,
  uint64: BigUint64Array, bool: Uint8Array,
};
// The host driver's option names -> ORT Web's graphOptimizationLevel values.
const OPT_LEVELS = { disable: "disabled", basic: "basic", extended: "extended", all: "all" };

const state = { ort: null, cfg: null, model: null, init: null, starting: null, feeds: [], session: null, fallbackRuns: 0 };

function mark(text) {
  // Delimits console output per phase for the Python side.
  console.log(`__harness_mark__ ${text}`);
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return await r.arrayBuffer();
}

async function loadOrt(base, bundle) {
  const url = `${base}${bundle}`;
  if (bundle.endsWith(".mjs")) return await import(url);
  // Releases without ES modules: a classic script defining globalThis.ort.
  await new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = url;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`cannot load ${url}`));
    document.head.appendChild(s);
  });
  return globalThis.ort;
}

function sessionOptions(extra) {
  const cfg = state.cfg;
  const ep = Object.keys(cfg.epOptions).length ? { name: cfg.ep, ...cfg.epOptions } : cfg.ep;
  const opts = {
    executionProviders: [ep],
    // Errors only while timing: logging must not cost time in the loop.
    logSeverityLevel: 3,
    extra: { ...cfg.sessionConfig },
  };
  if (cfg.graphOptimizationLevel) opts.graphOptimizationLevel = OPT_LEVELS[cfg.graphOptimizationLevel];
  return Object.assign(opts, extra || {});
}

async function create(bytes, extra) {
  // A copy per session: the copy is made before the clock starts.
  const data = new Uint8Array(bytes.slice(0));
  const t0 = performance.now();
  const session = await state.ort.InferenceSession.create(data, sessionOptions(extra));
  return [session, performance.now() - t0];
}

async function runOnce(session, feed) {
  const out = await session.run(feed);
  for (const t of Object.values(out)) {
    if (t.location && t.location !== "cpu" && t.dispose) t.dispose();
  }
  return out;
}

window.harness = {
  ready: true,

  async probe() {
    const out = {
      userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency,
      crossOriginIsolated: globalThis.crossOriginIsolated === true, deviceMemory: navigator.deviceMemory ?? null,
    };
    if (!navigator.gpu) {
      out.webgpuReason = "navigator.gpu is undefined (WebGPU disabled in this browser)";
    } else {
      try {
        const a = await navigator.gpu.requestAdapter();
        if (!a) {
          out.webgpuReason = "navigator.gpu.requestAdapter() returned null (no usable adapter)";
        } else {
          const i = a.info || (a.requestAdapterInfo ? await a.requestAdapterInfo() : {});
          out.webgpu = {
            vendor: i.vendor || "", architecture: i.architecture || "", device: i.device || "",
            description: i.description || "",
            isFallbackAdapter: i.isFallbackAdapter ?? a.isFallbackAdapter ?? null,
          };
        }
      } catch (e) {
        out.webgpuReason = `requestAdapter failed: ${e}`;
      }
    }
    const gl = document.createElement("canvas").getContext("webgl2");
    if (gl) {
      const dbg = gl.getExtension("WEBGL_debug_renderer_info");
      out.webgl = {
        renderer: dbg ? gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER),
        vendor: dbg ? gl.getParameter(dbg.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR),
        version: gl.getParameter(gl.VERSION),
      };
    } else {
      out.webglReason = "no WebGL2 context";
    }
    if (!navigator.ml) {
      out.webnnReason = "navigator.ml is undefined (WebNN not offered by this browser)";
    } else {
      try {
        await navigator.ml.createContext();
        out.webnn = true;
      } catch (e) {
        out.webnnReason = `navigator.ml.createContext() failed: ${e.name}: ${e.message}`;
      }
    }
    return out;
  },

  async setup() {
    const cfg = await (await fetch("/job.json")).json();
    state.cfg = cfg;
    const ort = await loadOrt(cfg.ortBase, cfg.bundle);
    if (!ort || !ort.InferenceSession) throw new Error(`${cfg.bundle} does not define the ort API`);
    state.ort = ort;
    ort.env.wasm.wasmPaths = cfg.ortBase;
    ort.env.wasm.numThreads = cfg.numThreads;
    // Run on the page's main thread, as an app without a worker does.
    ort.env.wasm.proxy = false;
    ort.env.logLevel = "warning";
    state.init = await fetchBytes("/init.onnx");
    // The runtime starts (WebAssembly instantiate, ORT's own init) while the
    // model and inputs download; initRuntime() waits for it. A promise that
    // settles as a value, so a failure is reported by initRuntime, not here.
    state.starting = create(state.init).then((v) => ({ v }), (e) => ({ e }));
    state.model = await fetchBytes("/model.onnx");
    state.feeds = [];
    for (let i = 0; i < cfg.inputs.length; i++) {
      const feed = {};
      for (const spec of cfg.inputs[i]) {
        const buf = await fetchBytes(`/in/${i}/${encodeURIComponent(spec.name)}`);
        const Typed = TYPED[spec.dtype];
        if (!Typed) throw new Error(`input ${spec.name}: dtype ${spec.dtype} is not supported by ONNX Runtime Web`);
        feed[spec.name] = new ort.Tensor(spec.dtype, new Typed(buf), spec.shape);
      }
      state.feeds.push(feed);
    }
    return {
      versions: ort.env.versions || {}, crossOriginIsolated: globalThis.crossOriginIsolated === true,
      numThreads: ort.env.wasm.numThreads, hardwareConcurrency: navigator.hardwareConcurrency,
      modelBytes: state.model.byteLength,
    };
  },

  // Runtime start-up (WebAssembly compile, EP and device init) on a one-node
  // model, so the model's own session create is timed apart from it.
  // Also says which of ONNX Runtime Web's files came from the HTTP cache
  // (Resource Timing: transferSize 0 with a body, W3C Resource Timing Level 2;
  // Chromium 54+), and so whether V8 could take the compiled WebAssembly
  // from its code cache instead of compiling it.
  async initRuntime() {
    const started = await state.starting;
    if (started.e) throw started.e;
    const [s, ms] = started.v;
    await s.release();
    const files = performance.getEntriesByType("resource")
      .filter((e) => new URL(e.name).pathname.startsWith(state.cfg.ortBase))
      .map((e) => ({ file: new URL(e.name).pathname.slice(state.cfg.ortBase.length), fromCache: e.transferSize === 0 && e.decodedBodySize > 0 }));
    return { ms, files };
  },

  wasmBytes() {
    return globalThis.__harnessWasmBytes ? globalThis.__harnessWasmBytes() : null;
  },

  async load() {
    const [s, ms] = await create(state.model);
    state.session = s;
    const feed = state.feeds[0] || {};
    const missing = s.inputNames.filter((n) => !(n in feed));
    return { loadMs: ms, inputNames: s.inputNames, outputNames: s.outputNames, missing };
  },

  async firstRun() {
    const t0 = performance.now();
    await runOnce(state.session, state.feeds[0]);
    return performance.now() - t0;
  },

  // Up to n runs, stopping early once maxMs of wall time has passed (at
  // least one run). Returns each run's duration and end time.
  async batch(n, maxMs) {
    const feed = state.feeds[0];
    const session = state.session;
    const samples = [];
    const ends = [];
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await runOnce(session, feed);
      const e = performance.now();
      samples.push(e - t);
      ends.push(e);
      if (e - start >= maxMs) break;
    }
    return { start, samples, ends, wasm: this.wasmBytes() };
  },

  now() {
    return performance.now();
  },

  async probes() {
    const skipped = [];
    for (let i = 0; i < state.feeds.length; i++) {
      const out = await state.session.run(state.feeds[i]);
      for (const [name, t] of Object.entries(out)) {
        let data = t.location && t.location !== "cpu" ? await t.getData(true) : t.data;
        if (!ArrayBuffer.isView(data)) {
          skipped.push(`${name} (${t.type})`);
          continue;
        }
        let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        // fetch() refuses views of a SharedArrayBuffer (the threaded wasm heap).
        if (typeof SharedArrayBuffer !== "undefined" && bytes.buffer instanceof SharedArrayBuffer) bytes = bytes.slice();
        const q = `dtype=${encodeURIComponent(t.type)}&shape=${t.dims.join(",")}`;
        const r = await fetch(`/out/${i}/${encodeURIComponent(name)}?${q}`, { method: "POST", body: bytes });
        if (!r.ok) throw new Error(`returning output ${name}: HTTP ${r.status} ${await r.text()}`);
      }
    }
    return { skipped };
  },

  async release() {
    if (state.session) await state.session.release();
    state.session = null;
  },

  // A separate session with ORT's verbose log (node placement) and its
  // profiler (per-node provider and kernel time); both go to the console.
  async placement(runs) {
    mark("placement-start");
    try {
      const [s] = await create(state.model, { logSeverityLevel: 0, logVerbosityLevel: 0, enableProfiling: true });
      try {
        for (let i = 0; i < runs; i++) await runOnce(s, state.feeds[0]);
        mark("profile-start");
        s.endProfiling();
        mark("profile-end");
      } finally {
        await s.release();
      }
    } finally {
      mark("placement-end");
    }
  },

  // ORT's strict probe: session create fails if any node would land on the
  // CPU EP (session option session.disable_cpu_ep_fallback).
  async strict() {
    mark("strict-start");
    try {
      const [s] = await create(state.model, { extra: { ...state.cfg.sessionConfig, "session.disable_cpu_ep_fallback": "1" } });
      await s.release();
      return { fullyAccelerated: true, message: "" };
    } catch (e) {
      return { fullyAccelerated: false, message: String(e && e.message ? e.message : e) };
    } finally {
      mark("strict-end");
    }
  },
};
