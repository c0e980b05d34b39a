;; handle writes 16 keys of 2 bytes with 256-byte values (4 KiB in all) into kv; the
;; manifest grants kv max_bytes 1KiB, so the 4th write (4 x 258 = 1032 bytes) is over quota.
;; Build: wat2wasm kv-over-quota.wat -o kv-over-quota.wasm  (or: bash modules/build.sh)
;; Expected: Handle fails with ErrQuota; no kv write of the event is committed (kv stays empty).
(module
  (import "wasmfleet" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
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
  ;; key "k?" at 64; value: 256 bytes at 1024 (zeros)
  (data (i32.const 64) "k0")
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (local $i i32)
    (loop $each
      (i32.store8 (i32.const 65) (i32.add (i32.const 0x41) (local.get $i)))
      (drop (call $kv_set (i32.const 64) (i32.const 2) (i32.const 1024) (i32.const 256)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $i) (i32.const 16))))
    (i32.const 0)))
