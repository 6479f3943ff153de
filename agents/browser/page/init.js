// Installed with addInitScript, so it runs before any script of the page.
// It remembers every WebAssembly.Memory the page creates (ORT Web's threaded
// builds create their shared memory in JS and import it into the module) or
// that an instantiated module exports (unthreaded builds), so the runner can
// read the size of the WebAssembly heap without ONNX Runtime's cooperation.
// A wasm memory only ever grows, so its size now is also its peak.
(() => {
  const memories = new Set();
  const OrigMemory = WebAssembly.Memory;
  function Memory(descriptor) {
    const m = new OrigMemory(descriptor);
    memories.add(m);
    return m;
  }
  Memory.prototype = OrigMemory.prototype;
  Object.setPrototypeOf(Memory, OrigMemory);
  WebAssembly.Memory = Memory;

  const note = (result) => {
    const instance = result instanceof WebAssembly.Instance ? result : result && result.instance;
    if (instance) {
      for (const value of Object.values(instance.exports)) {
        if (value instanceof OrigMemory) memories.add(value);
      }
    }
    return result;
  };
  const instantiate = WebAssembly.instantiate;
  WebAssembly.instantiate = function (...args) {
    return instantiate.apply(this, args).then(note);
  };
  const streaming = WebAssembly.instantiateStreaming;
  if (streaming) {
    WebAssembly.instantiateStreaming = function (...args) {
      return streaming.apply(this, args).then(note);
    };
  }
  Object.defineProperty(globalThis, "__harnessWasmBytes", {
    value: () => {
      let total = 0;
      for (const m of memories) total += m.buffer.byteLength;
      return total;
    },
  });
  Object.defineProperty(globalThis, "__harnessWasmMemories", { value: () => memories.size });
})();
