;; handle calls publish with a topic pointer of 0xFFFFFFF0 and length 100 (ptr+len wraps
;; past 2^32).
;; Build: wat2wasm oob-pointers.wat -o oob-pointers.wasm  (or: bash modules/build.sh)
;; Expected: Handle fails with ErrBadPointer; no host panic, nothing published.
(module
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
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
  (func (export "wasmfleet_handle") (param $p i32) (param $n i32) (result i32)
    (drop (call $publish (i32.const 0xFFFFFFF0) (i32.const 100) (local.get $p) (local.get $n)))
    (i32.const 0)))
