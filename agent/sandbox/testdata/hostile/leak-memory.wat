;; leak-memory: writes memory every way wasm and the host can, to carry state to the next event.
;;
;; Every event first publishes to leak/obs two checksums: of memory [0, 65024), and of the
;; rest of memory after its payload (which the host wrote at 65024); then, for each letter of its payload, it writes somewhere
;; that is zero or known in a pristine instance. Addresses straddle 4 KiB chunks where they
;; can, since the sandbox's compiler restores only the chunks an event wrote:
;;   a i32.store at 4094          b i64.store at 0 with offset 8188
;;   c f32.store at 12286         d f64.store at 16380
;;   e i32.store8 at 20480        f i32.store16 at 24575
;;   g i64.store8 at 28671        h i64.store16 at 32767     i i64.store32 at 36862
;;   j v128.store at 40952        k v128.store8_lane at 45055
;;   l v128.store16_lane at 49151 m v128.store32_lane at 53246
;;   n v128.store64_lane at 57340
;;   o memory.fill at 61000, 100 bytes       p memory.copy of "copy me" (at 100) to 2000
;;   q memory.init of a passive segment at 3000
;;   r the host's event_topic into 6000      s WASI random_get, 64 bytes at 10000
;;   t WASI clock_time_get through call_indirect, into 14000
;;   u a store three calls deep, at 64000, in a function that returns early
;;   v i32.store at 10000 with offset 50000  w a loop of 100 byte stores from 30000
;;   x a store of the result of a call, whose own store is at 5000, at 5100
;; Build: wat2wasm leak-memory.wat -o leak-memory.wasm  (or: bash modules/build.sh)
;; Expected: every event publishes the same first checksum, and every event with an empty
;; payload the same second one too (agent/sandbox/pristine_test.go).
(module
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet" "event_topic" (func $event_topic (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (type $clock (func (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (elem (i32.const 0) func $clock_time_get)
  (data (i32.const 64) "leak/obs")
  (data (i32.const 100) "copy me")
  (data $seg "segment")

  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 65024))

  ;; FNV-1a over the words of [0, 65024), with loads only.
  (func $checksum (result i32)
    (local $a i32) (local $h i32)
    (local.set $h (i32.const 0x811c9dc5))
    (loop $l
      (local.set $h (i32.mul (i32.xor (local.get $h) (i32.load (local.get $a))) (i32.const 0x01000193)))
      (br_if $l (i32.lt_u (local.tee $a (i32.add (local.get $a) (i32.const 4))) (i32.const 65024))))
    (local.get $h))

  ;; FNV-1a over the bytes of [$a, 65536).
  (func $tail (param $a i32) (result i32)
    (local $h i32)
    (local.set $h (i32.const 0x811c9dc5))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $a) (i32.const 65536)))
        (local.set $h (i32.mul (i32.xor (local.get $h) (i32.load8_u (local.get $a))) (i32.const 0x01000193)))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (br $l)))
    (local.get $h))

  (func $deep (call $deeper))
  (func $deeper (call $deepest))
  (func $deepest
    (block (i32.store (i32.const 64000) (i32.const 7)) (return))
    (unreachable))

  (func $inner (result i32) (i32.store (i32.const 5000) (i32.const 9)) (i32.const 8))

  (func $bytes (local $i i32)
    (loop $l
      (i32.store8 (i32.add (i32.const 30000) (local.get $i)) (i32.const 0xAB))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 100)))))

  (func $write (param $c i32)
    (if (i32.eq (local.get $c) (i32.const 0x61)) (then (i32.store (i32.const 4094) (i32.const -1))))
    (if (i32.eq (local.get $c) (i32.const 0x62)) (then (i64.store offset=8188 (i32.const 0) (i64.const -1))))
    (if (i32.eq (local.get $c) (i32.const 0x63)) (then (f32.store (i32.const 12286) (f32.const -1))))
    (if (i32.eq (local.get $c) (i32.const 0x64)) (then (f64.store (i32.const 16380) (f64.const -1))))
    (if (i32.eq (local.get $c) (i32.const 0x65)) (then (i32.store8 (i32.const 20480) (i32.const 1))))
    (if (i32.eq (local.get $c) (i32.const 0x66)) (then (i32.store16 (i32.const 24575) (i32.const -1))))
    (if (i32.eq (local.get $c) (i32.const 0x67)) (then (i64.store8 (i32.const 28671) (i64.const 1))))
    (if (i32.eq (local.get $c) (i32.const 0x68)) (then (i64.store16 (i32.const 32767) (i64.const -1))))
    (if (i32.eq (local.get $c) (i32.const 0x69)) (then (i64.store32 (i32.const 36862) (i64.const -1))))
    (if (i32.eq (local.get $c) (i32.const 0x6A)) (then (v128.store (i32.const 40952) (v128.const i64x2 -1 -1))))
    (if (i32.eq (local.get $c) (i32.const 0x6B)) (then (v128.store8_lane 0 (i32.const 45055) (v128.const i64x2 -1 -1))))
    (if (i32.eq (local.get $c) (i32.const 0x6C)) (then (v128.store16_lane 0 (i32.const 49151) (v128.const i64x2 -1 -1))))
    (if (i32.eq (local.get $c) (i32.const 0x6D)) (then (v128.store32_lane 0 (i32.const 53246) (v128.const i64x2 -1 -1))))
    (if (i32.eq (local.get $c) (i32.const 0x6E)) (then (v128.store64_lane 0 (i32.const 57340) (v128.const i64x2 -1 -1))))
    (if (i32.eq (local.get $c) (i32.const 0x6F)) (then (memory.fill (i32.const 61000) (i32.const 0xAB) (i32.const 100))))
    (if (i32.eq (local.get $c) (i32.const 0x70)) (then (memory.copy (i32.const 2000) (i32.const 100) (i32.const 7))))
    (if (i32.eq (local.get $c) (i32.const 0x71)) (then (memory.init $seg (i32.const 3000) (i32.const 0) (i32.const 7))))
    (if (i32.eq (local.get $c) (i32.const 0x72)) (then (drop (call $event_topic (i32.const 6000) (i32.const 64)))))
    (if (i32.eq (local.get $c) (i32.const 0x73)) (then (drop (call $random_get (i32.const 10000) (i32.const 64)))))
    (if (i32.eq (local.get $c) (i32.const 0x74))
      (then (drop (call_indirect (type $clock) (i32.const 0) (i64.const 1) (i32.const 14000) (i32.const 0)))))
    (if (i32.eq (local.get $c) (i32.const 0x75)) (then (call $deep)))
    (if (i32.eq (local.get $c) (i32.const 0x76)) (then (i32.store offset=50000 (i32.const 10000) (i32.const -1))))
    (if (i32.eq (local.get $c) (i32.const 0x77)) (then (call $bytes)))
    (if (i32.eq (local.get $c) (i32.const 0x78)) (then (i32.store (i32.const 5100) (call $inner)))))

  (func (export "wasmfleet_handle") (param $p i32) (param $n i32) (result i32)
    (local $i i32)
    (i32.store (i32.const 512) (call $checksum))
    (i32.store (i32.const 516) (call $tail (i32.add (local.get $p) (local.get $n))))
    (drop (call $publish (i32.const 64) (i32.const 8) (i32.const 512) (i32.const 8)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $write (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0)))
