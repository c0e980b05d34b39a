;; the module imports env.system, which is not in the ABI.
;; Build: wat2wasm unknown-import.wat -o unknown-import.wasm  (or: bash modules/build.sh)
;; Expected: Load fails with ErrUnknownImport naming env.system.
(module
  (import "env" "system" (func $system (param i32) (result i32)))
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
  (data (i32.const 64) "cat /etc/passwd\00")
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (call $system (i32.const 64))))
