;; handle publishes to flood/out 10000 times; the manifest allows 8 (limits.max_publishes).
;; Build: wat2wasm publish-flood.wat -o publish-flood.wasm  (or: bash modules/build.sh)
;; Expected: Handle fails with ErrPublishLimit at the 9th publish; nothing is published (or at most the first 8, if the host delivers before the event ends — it should not: a failed event publishes nothing).
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
  (data (i32.const 64) "flood/out")
  (data (i32.const 80) "x")
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (local $i i32)
    (loop $each
      (drop (call $publish (i32.const 64) (i32.const 9) (i32.const 80) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $i) (i32.const 10000))))
    (i32.const 0)))
