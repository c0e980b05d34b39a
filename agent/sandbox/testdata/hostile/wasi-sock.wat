;; handle tries wasi sock_accept, sock_recv and sock_send on fds 0..10. It returns 1 if any
;; call succeeded, 0 if every one failed.
;; Build: wat2wasm wasi-sock.wat -o wasi-sock.wasm  (or: bash modules/build.sh)
;; Expected: Load succeeds; Handle succeeds (returns 0) with no messages, because every sock_* call returns an error (EBADF/ENOTSUP/ENOTSOCK).
(module
  (import "wasi_snapshot_preview1" "sock_accept"
    (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv"
    (func $sock_recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send"
    (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
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
  ;; one iovec at 16 pointing at a 64-byte buffer at 256; results at 32, 36, 40
  (data (i32.const 16) "\00\01\00\00\40\00\00\00")
  (data (i32.const 256) "GET / HTTP/1.0\0d\0a\0d\0a")
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (local $fd i32) (local $ok i32)
    (loop $each
      (local.set $ok (i32.or (local.get $ok)
        (i32.eqz (call $sock_accept (local.get $fd) (i32.const 0) (i32.const 32)))))
      (local.set $ok (i32.or (local.get $ok)
        (i32.eqz (call $sock_recv (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 0) (i32.const 36) (i32.const 40)))))
      (local.set $ok (i32.or (local.get $ok)
        (i32.eqz (call $sock_send (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 0) (i32.const 36)))))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $each (i32.le_u (local.get $fd) (i32.const 10))))
    (local.get $ok)))
