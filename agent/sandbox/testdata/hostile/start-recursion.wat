;; the start function runs a loop-free call tree of 2^60 calls; no loop instruction anywhere.
;; Build: wat2wasm start-recursion.wat -o start-recursion.wasm  (or: bash modules/build.sh)
;; Expected: As start-never-returns: ErrTimeout after 50ms.
(module
  (memory (export "memory") 1)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 4096))
  (func $f (param $depth i32)
    (if (i32.eqz (local.get $depth)) (then (return)))
    (call $f (i32.sub (local.get $depth) (i32.const 1)))
    (call $f (i32.sub (local.get $depth) (i32.const 1))))
  (func $start (call $f (i32.const 60)))
  (start $start)
  (func (export "wasmfleet_handle") (param i32 i32) (result i32) (i32.const 0)))
