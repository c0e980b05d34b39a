;; handle sets kv key "k" (so the value exists), then kv_get's it into a buffer at
;; 0xFFFFFFF0 with capacity 0x100 (outside memory, and wrapping past 2^32).
;; Build: wat2wasm oob-kv.wat -o oob-kv.wasm  (or: bash modules/build.sh)
;; Expected: Handle fails with ErrBadPointer; the kv_set is discarded; no host panic.
(module
  (import "wasmfleet" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  ;; handler/v1 boilerplate: one page of memory and a bump allocator for the payload.
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "wasmfleet_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (if (i64.gt_u (i64.add (i64.extend_i32_u (local.get $p)) (i64.extend_i32_u (local.get $n)))
                  (i64.mul (i64.extend_i32_u (memory.size)) (i64.const 65536)))
      (then (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (local.get $p))
  (data (i32.const 64) "k")
  (data (i32.const 80) "value")
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (drop (call $kv_set (i32.const 64) (i32.const 1) (i32.const 80) (i32.const 5)))
    (drop (call $kv_get (i32.const 64) (i32.const 1) (i32.const 0xFFFFFFF0) (i32.const 0x100)))
    (i32.const 0)))
