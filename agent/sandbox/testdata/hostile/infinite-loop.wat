;; handle spins forever in a loop.
;; Also run it while another goroutine calls runtime.GC() in a loop: compiled wasm cannot be
;; preempted by the Go scheduler, so a stop-the-world that waits for this goroutine must not
;; also be what the timeout needs in order to fire (observed: the whole process froze).
;; Build: wat2wasm infinite-loop.wat -o infinite-loop.wasm  (or: bash modules/build.sh)
;; Expected: Handle fails with ErrTimeout after limits.timeout (50ms); the agent goes on.
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
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
