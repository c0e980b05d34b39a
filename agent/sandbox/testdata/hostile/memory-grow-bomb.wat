;; handle grows memory one page at a time until memory.grow returns -1, then traps.
;; Build: wat2wasm memory-grow-bomb.wat -o memory-grow-bomb.wasm  (or: bash modules/build.sh)
;; Expected: memory.grow returns -1 once memory reaches the 1MiB limit (16 pages); the trap that follows is reported as ErrMemoryLimit (ABI: an event that fails after a refused grow).
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
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
