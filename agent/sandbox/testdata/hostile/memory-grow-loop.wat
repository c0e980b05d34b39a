;; handle calls memory.grow forever, ignoring the -1 it gets once the limit is reached.
;; Build: wat2wasm memory-grow-loop.wat -o memory-grow-loop.wasm  (or: bash modules/build.sh)
;; Expected: memory stays at or below 1MiB; Handle fails with ErrTimeout after 50ms (a host may report ErrMemoryLimit instead, since a grow was refused; either is correct, never a host OOM).
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
    (loop $grow
      (drop (memory.grow (i32.const 1)))
      (br $grow))
    (i32.const 0)))
