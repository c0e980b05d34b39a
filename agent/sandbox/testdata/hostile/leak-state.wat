;; pristine-instance probe. Each event reads a mutable global (initially 7), the i32 at
;; address 2048 (initially 42), table slot 0 (initially a function returning 1) and the memory
;; size in pages (initially 1), publishes what it saw to leak/out as
;;   global=7 memory=42 table=1 pages=1
;; and then changes all four (global 8, memory 43, slot 0 -> function returning 2, one more page).
;; Build: wat2wasm leak-state.wat -o leak-state.wasm  (or: bash modules/build.sh)
;; Expected: Every event publishes exactly "global=7 memory=42 table=1 pages=1" to leak/out. Any other value means state leaked from an earlier event.
(module
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
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
  (type $ret (func (result i32)))
  (global $g (mut i32) (i32.const 7))
  (table $t 2 funcref)
  (func $one (result i32) (i32.const 1))
  (func $two (result i32) (i32.const 2))
  (elem (i32.const 0) $one $two)
  (data (i32.const 2048) "\2a\00\00\00")
  (data (i32.const 64) "leak/out")
  (data (i32.const 128) "global=")
  (data (i32.const 136) " memory=")
  (data (i32.const 145) " table=")
  (data (i32.const 153) " pages=")

  ;; $copy copies n bytes from src to dst and returns dst+n.
  (func $copy (param $dst i32) (param $src i32) (param $n i32) (result i32)
    (memory.copy (local.get $dst) (local.get $src) (local.get $n))
    (i32.add (local.get $dst) (local.get $n)))

  ;; $itoa writes v in decimal at dst and returns the address after the last digit.
  (func $itoa (param $dst i32) (param $v i32) (result i32)
    (local $len i32) (local $x i32) (local $i i32)
    (local.set $x (local.get $v))
    (loop $count
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (local.set $x (i32.div_u (local.get $x) (i32.const 10)))
      (br_if $count (local.get $x)))
    (local.set $i (local.get $len))
    (local.set $x (local.get $v))
    (loop $digit
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (local.get $dst) (local.get $i))
        (i32.add (i32.const 48) (i32.rem_u (local.get $x) (i32.const 10))))
      (local.set $x (i32.div_u (local.get $x) (i32.const 10)))
      (br_if $digit (local.get $i)))
    (i32.add (local.get $dst) (local.get $len)))

  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (local $out i32)
    ;; the message is built at 512
    (local.set $out (call $copy (i32.const 512) (i32.const 128) (i32.const 7)))
    (local.set $out (call $itoa (local.get $out) (global.get $g)))
    (local.set $out (call $copy (local.get $out) (i32.const 136) (i32.const 8)))
    (local.set $out (call $itoa (local.get $out) (i32.load (i32.const 2048))))
    (local.set $out (call $copy (local.get $out) (i32.const 145) (i32.const 7)))
    (local.set $out (call $itoa (local.get $out) (call_indirect $t (type $ret) (i32.const 0))))
    (local.set $out (call $copy (local.get $out) (i32.const 153) (i32.const 7)))
    (local.set $out (call $itoa (local.get $out) (memory.size)))
    (drop (call $publish (i32.const 64) (i32.const 8)
      (i32.const 512) (i32.sub (local.get $out) (i32.const 512))))
    ;; now dirty everything
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store (i32.const 2048) (i32.add (i32.load (i32.const 2048)) (i32.const 1)))
    (table.set $t (i32.const 0) (ref.func $two))
    (drop (memory.grow (i32.const 1)))
    (i32.const 0)))
