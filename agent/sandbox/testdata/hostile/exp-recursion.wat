;; handle starts a loop-free call tree of 2^60 calls: $f calls itself twice, depth 60.
;; There is no loop instruction anywhere in this module, so wazero's WithCloseOnContextDone
;; (which checks at loop headers only) cannot stop it; the host must instrument calls.
;; Also run it while another goroutine calls runtime.GC() in a loop: compiled wasm cannot be
;; preempted by the Go scheduler, so a stop-the-world that waits for this goroutine must not
;; also be what the timeout needs in order to fire (observed: the whole process froze).
;; Build: wat2wasm exp-recursion.wat -o exp-recursion.wasm  (or: bash modules/build.sh)
;; Expected: Handle fails with ErrTimeout after 50ms.
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
  (func $f (param $depth i32)
    (if (i32.eqz (local.get $depth)) (then (return)))
    (call $f (i32.sub (local.get $depth) (i32.const 1)))
    (call $f (i32.sub (local.get $depth) (i32.const 1))))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (call $f (i32.const 60))
    (i32.const 0)))
