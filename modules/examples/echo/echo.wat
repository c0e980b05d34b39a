;; echo: publishes each event's payload unchanged to echo/{device}.
;; A handler/v1 module in plain WebAssembly text, with no toolchain but wabt.
;; Build (from the repository root; or bash modules/build.sh):
;;   wat2wasm modules/examples/echo/echo.wat -o modules/examples/echo/echo.wasm
(module
  (import "wasmfleet" "device_id" (func $device_id (param i32 i32) (result i32)))
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))

  ;; Memory layout: the topic is built at 16 ("echo/" then the device id, up to 256 bytes);
  ;; payloads go from 1024 up, growing memory when needed.
  (memory (export "memory") 1)
  (data (i32.const 16) "echo/")
  (global $heap (mut i32) (i32.const 1024))

  ;; wasmfleet_alloc: a bump allocator. Every event runs in a fresh instance, so nothing is
  ;; ever freed. Returns 0 when memory cannot grow.
  (func (export "wasmfleet_alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i64) (local $have i64)
    (local.set $p (global.get $heap))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $p)) (i64.extend_i32_u (local.get $n))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (i32.const -1)
              (memory.grow (i32.wrap_i64 (i64.shr_u
                (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 65535))
                (i64.const 16)))))
          (then (return (i32.const 0))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $p))

  (func (export "wasmfleet_handle") (param $payload i32) (param $len i32) (result i32)
    (local $id i32)
    ;; device id straight after "echo/"; longer than 256 bytes is a failure (1)
    (local.set $id (call $device_id (i32.const 21) (i32.const 256)))
    (if (i32.gt_u (local.get $id) (i32.const 256)) (then (return (i32.const 1))))
    (drop (call $publish
      (i32.const 16) (i32.add (i32.const 5) (local.get $id))
      (local.get $payload) (local.get $len)))
    (i32.const 0)))
