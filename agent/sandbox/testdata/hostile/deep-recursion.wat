;; handle recurses without bound (not a tail call) until the call stack is exhausted.
;; Note: wazero's compiler only reports a stack overflow at a 400 MB stack (callStackCeiling),
;; so the host must bound call depth itself for this to end as ErrStackOverflow quickly and
;; without using hundreds of MB.
;; Build: wat2wasm deep-recursion.wat -o deep-recursion.wasm  (or: bash modules/build.sh)
;; Expected: Handle fails with ErrStackOverflow (not a host crash).
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
  (func $down (param $n i32) (result i32)
    (i32.add (call $down (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (drop (call $down (i32.const 0)))
    (i32.const 0)))
