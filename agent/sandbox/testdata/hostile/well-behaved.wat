;; handle publishes its payload unchanged to ok/out. Run after each hostile case to show the
;; host is still healthy.
;; Build: wat2wasm well-behaved.wat -o well-behaved.wasm  (or: bash modules/build.sh)
;; Expected: Handle succeeds with one message {topic: ok/out, payload: the event payload}.
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
  (data (i32.const 64) "ok/out")
  (func (export "wasmfleet_handle") (param $p i32) (param $n i32) (result i32)
    (drop (call $publish (i32.const 64) (i32.const 6) (local.get $p) (local.get $n)))
    (i32.const 0)))
