;; handle calls publish with a valid topic and a payload at 16 of length 0xFFFFFFF8:
;; 16 + 0xFFFFFFF8 wraps to 8 in 32-bit arithmetic, so a host that adds in uint32 is fooled.
;; Build: wat2wasm oob-length.wat -o oob-length.wasm  (or: bash modules/build.sh)
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
  (data (i32.const 64) "oob/x")
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (drop (call $publish (i32.const 64) (i32.const 5) (i32.const 16) (i32.const 0xFFFFFFF8)))
    (i32.const 0)))
