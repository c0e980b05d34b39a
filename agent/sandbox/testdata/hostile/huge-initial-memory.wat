;; the module declares 65536 pages (4GiB) of initial memory; its manifest allows 1MiB.
;; Build: wat2wasm huge-initial-memory.wat -o huge-initial-memory.wasm  (or: bash modules/build.sh)
;; Expected: Load fails with ErrMemoryLimit; nothing is allocated.
(module
  (memory (export "memory") 65536)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32) (i32.const 0)))
