;; the start function never returns (an infinite loop).
;; Build: wat2wasm start-never-returns.wat -o start-never-returns.wasm  (or: bash modules/build.sh)
;; Expected: Instantiation (at Load, or at the first Handle if the host instantiates per event) fails with ErrTimeout after 50ms; the agent goes on.
(module
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
  (func $start (loop $forever (br $forever)))
  (start $start)
  (func (export "wasmfleet_handle") (param i32 i32) (result i32) (i32.const 0)))
