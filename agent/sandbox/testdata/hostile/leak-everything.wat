;; leak-everything: tries every way it knows to carry state from one event to the next.
;;
;; Every event first records what it finds (27 little-endian u32 "observations", below) and
;; publishes them to leak/obs; then, for each letter of its payload, it changes something:
;;   m  scribbles 0xAB over all of memory below the payload buffer (at 61440)
;;   g  sets every mutable global: i32, i64, f32, f64 (none exported), the exported $x and
;;      the funcref $fr (to null)
;;   r  reads both WASI clocks and 64 bytes of WASI randomness again (advancing them)
;;   p  grows memory by a page and writes into the new page
;;   t  table.set: slot 0 now calls $two
;;   T  table.grow by one
;;   d  data.drop of the passive data segment the observations read with memory.init
;;   E  elem.drop of the passive element segment
;;   P  probes that segment: table.init from it (traps if it was dropped) and calls it
;;   f  fd_close(1) and fd_close(2)
;;   k  kv_set, without the kv capability (the event ends with capability-denied)
;;   u  unreachable (the event traps, after the letters before it)
;;   e  returns 1: a handler failure, after the letters before it
;; The start function and _initialize each count their runs, in a global and in memory.
;;
;; Observations (index: what, value in a pristine instance):
;;   0 sum of the u32 words of memory [0, 61440)   (the same in every event)
;;   1 mem[2048]: 42      2 memory.size: 1         3 $g: 7
;;   4,5 $h: 0x1_00000002 (low, high)              6 $f bits: 1.5   7,8 $d bits: 2.25
;;   9 $x (exported): 11  10 ref.is_null($fr): 0   11 call_indirect slot 0: 1
;;   12 table.size: 2     13 memory.init of the passive segment: "seg!"
;;   14 $started: 1       15 mem[2052] (bumped by start): 1
;;   16 $inited: 1        17 mem[2056] (bumped by _initialize): 1
;;   18 fd_fdstat_get(1) errno: 0                  19 fd_fdstat_get(2) errno: 0
;;   20,21 clock_time_get(realtime), 22,23 clock_time_get(monotonic): the fake clocks
;;   24,25 random_get of 8 bytes: the deterministic stream
;;   26 random_get's errno: 0
;; Build: wat2wasm leak-everything.wat -o leak-everything.wasm  (or: bash modules/build.sh)
;; Expected: every event that succeeds publishes the same 108 bytes (agent/sandbox/pristine_test.go checks them).
(module
  (import "wasmfleet" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (type $ret (func (result i32)))
  (table $t 2 funcref)
  (global $g (mut i32) (i32.const 7))
  (global $h (mut i64) (i64.const 0x100000002))
  (global $f (mut f32) (f32.const 1.5))
  (global $d (mut f64) (f64.const 2.25))
  (global $x (export "x") (mut i32) (i32.const 11))
  (global $fr (mut funcref) (ref.func $one))
  (global $started (mut i32) (i32.const 0))
  (global $inited (mut i32) (i32.const 0))
  (func $one (result i32) (i32.const 1))
  (func $two (result i32) (i32.const 2))
  (func $three (result i32) (i32.const 3))
  (elem (table $t) (i32.const 0) func $one $two)
  (elem $passive func $three)
  (data (i32.const 2048) "\2a\00\00\00")
  (data (i32.const 64) "leak/obs")
  (data (i32.const 80) "k")
  (data $seg "seg!")

  (func $start
    (global.set $started (i32.add (global.get $started) (i32.const 1)))
    (i32.store (i32.const 2052) (i32.add (i32.load (i32.const 2052)) (i32.const 1))))
  (start $start)
  (func (export "_initialize")
    (global.set $inited (i32.add (global.get $inited) (i32.const 1)))
    (i32.store (i32.const 2056) (i32.add (i32.load (i32.const 2056)) (i32.const 1))))

  ;; The payload always goes to 61440, outside the memory that observation 0 sums.
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 61440))

  ;; $obs stores observation i.
  (func $obs (param $i i32) (param $v i32)
    (i32.store (i32.add (i32.const 512) (i32.shl (local.get $i) (i32.const 2))) (local.get $v)))

  (func $sum (result i32)
    (local $a i32) (local $s i32)
    (loop $l
      (local.set $s (i32.add (local.get $s) (i32.load (local.get $a))))
      (local.set $a (i32.add (local.get $a) (i32.const 4)))
      (br_if $l (i32.lt_u (local.get $a) (i32.const 61440))))
    (local.get $s))

  (func $observe
    (local $sum i32)
    (local.set $sum (call $sum)) ;; first: everything below writes into the summed memory
    (call $obs (i32.const 0) (local.get $sum))
    (call $obs (i32.const 1) (i32.load (i32.const 2048)))
    (call $obs (i32.const 2) (memory.size))
    (call $obs (i32.const 3) (global.get $g))
    (call $obs (i32.const 4) (i32.wrap_i64 (global.get $h)))
    (call $obs (i32.const 5) (i32.wrap_i64 (i64.shr_u (global.get $h) (i64.const 32))))
    (call $obs (i32.const 6) (i32.reinterpret_f32 (global.get $f)))
    (call $obs (i32.const 7) (i32.wrap_i64 (i64.reinterpret_f64 (global.get $d))))
    (call $obs (i32.const 8) (i32.wrap_i64 (i64.shr_u (i64.reinterpret_f64 (global.get $d)) (i64.const 32))))
    (call $obs (i32.const 9) (global.get $x))
    (call $obs (i32.const 10) (ref.is_null (global.get $fr)))
    (call $obs (i32.const 11) (call_indirect $t (type $ret) (i32.const 0)))
    (call $obs (i32.const 12) (table.size $t))
    ;; traps if the segment was dropped in an earlier event
    (memory.init $seg (i32.const 1024) (i32.const 0) (i32.const 4))
    (call $obs (i32.const 13) (i32.load (i32.const 1024)))
    (call $obs (i32.const 14) (global.get $started))
    (call $obs (i32.const 15) (i32.load (i32.const 2052)))
    (call $obs (i32.const 16) (global.get $inited))
    (call $obs (i32.const 17) (i32.load (i32.const 2056)))
    (call $obs (i32.const 18) (call $fd_fdstat_get (i32.const 1) (i32.const 1100)))
    (call $obs (i32.const 19) (call $fd_fdstat_get (i32.const 2) (i32.const 1100)))
    (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1200)))
    (call $obs (i32.const 20) (i32.load (i32.const 1200)))
    (call $obs (i32.const 21) (i32.load (i32.const 1204)))
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1200)))
    (call $obs (i32.const 22) (i32.load (i32.const 1200)))
    (call $obs (i32.const 23) (i32.load (i32.const 1204)))
    (call $obs (i32.const 26) (call $random_get (i32.const 1300) (i32.const 8)))
    (call $obs (i32.const 24) (i32.load (i32.const 1300)))
    (call $obs (i32.const 25) (i32.load (i32.const 1304))))

  (func $scribble
    (memory.fill (i32.const 0) (i32.const 0xAB) (i32.const 61440)))

  (func $globals
    (global.set $g (i32.const 8))
    (global.set $h (i64.const -1))
    (global.set $f (f32.const -7))
    (global.set $d (f64.const -9))
    (global.set $x (i32.const 12))
    (global.set $fr (ref.null func)))

  (func $advance
    (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1400)))
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1400)))
    (drop (call $random_get (i32.const 1400) (i32.const 64))))

  (func (export "wasmfleet_handle") (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $c i32)
    (call $observe)
    (drop (call $publish (i32.const 64) (i32.const 8) (i32.const 512) (i32.const 108)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (i32.eq (local.get $c) (i32.const 0x6D)) (then (call $scribble)))            ;; m
        (if (i32.eq (local.get $c) (i32.const 0x67)) (then (call $globals)))             ;; g
        (if (i32.eq (local.get $c) (i32.const 0x72)) (then (call $advance)))             ;; r
        (if (i32.eq (local.get $c) (i32.const 0x70))                                     ;; p
          (then (drop (memory.grow (i32.const 1)))
                (i32.store (i32.const 70000) (i32.const 99))))
        (if (i32.eq (local.get $c) (i32.const 0x74))                                     ;; t
          (then (table.set $t (i32.const 0) (ref.func $two))))
        (if (i32.eq (local.get $c) (i32.const 0x54))                                     ;; T
          (then (drop (table.grow $t (ref.func $two) (i32.const 1)))))
        (if (i32.eq (local.get $c) (i32.const 0x64)) (then (data.drop $seg)))            ;; d
        (if (i32.eq (local.get $c) (i32.const 0x45)) (then (elem.drop $passive)))        ;; E
        (if (i32.eq (local.get $c) (i32.const 0x50))                                     ;; P
          (then (table.init $t $passive (i32.const 1) (i32.const 0) (i32.const 1))
                (drop (call_indirect $t (type $ret) (i32.const 1)))))
        (if (i32.eq (local.get $c) (i32.const 0x66))                                     ;; f
          (then (drop (call $fd_close (i32.const 1)))
                (drop (call $fd_close (i32.const 2)))))
        (if (i32.eq (local.get $c) (i32.const 0x6B))                                     ;; k
          (then (drop (call $kv_set (i32.const 80) (i32.const 1) (i32.const 80) (i32.const 1)))))
        (if (i32.eq (local.get $c) (i32.const 0x75)) (then (unreachable)))               ;; u
        (if (i32.eq (local.get $c) (i32.const 0x65)) (then (return (i32.const 1))))      ;; e
        (br $next)))
    (i32.const 0)))
