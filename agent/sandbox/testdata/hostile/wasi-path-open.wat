;; handle tries wasi path_open on fds 0..10 with "/etc/passwd", "etc/passwd" and
;; "../../../../etc/passwd" (read rights, following symlinks). It returns 1 if any call
;; succeeded, 0 if every one failed.
;; Build: wat2wasm wasi-path-open.wat -o wasi-path-open.wasm  (or: bash modules/build.sh)
;; Expected: Load succeeds (path_open is a WASI import the ABI allows); Handle succeeds (returns 0) with no messages, because every path_open returns an error (EBADF/ENOTSUP).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
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
  ;; paths at 64, 80 and 96; the opened fd is written at 128
  (data (i32.const 64) "/etc/passwd")
  (data (i32.const 80) "etc/passwd")
  (data (i32.const 96) "../../../../etc/passwd")
  (func $try (param $fd i32) (param $path i32) (param $len i32) (result i32)
    ;; 1 when path_open returned errno 0 (success)
    (i32.eqz (call $path_open
      (local.get $fd) (i32.const 1) (local.get $path) (local.get $len)
      (i32.const 0) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 128))))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (local $fd i32) (local $opened i32)
    (loop $each
      (local.set $opened (i32.or (local.get $opened) (call $try (local.get $fd) (i32.const 64) (i32.const 11))))
      (local.set $opened (i32.or (local.get $opened) (call $try (local.get $fd) (i32.const 80) (i32.const 10))))
      (local.set $opened (i32.or (local.get $opened) (call $try (local.get $fd) (i32.const 96) (i32.const 22))))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $each (i32.le_u (local.get $fd) (i32.const 10))))
    (local.get $opened)))
