package rewrite

import (
	"errors"
	"fmt"
	"testing"
)

// writtenModule writes memory every way wasm can, one exported function each; the test calls
// each in a fresh instance and reads the written global afterwards. env.log is an import the
// host tracks, env.tick one it does not; $tick is also in the table.
const writtenModule = `(module
  (import "env" "log" (func $log (param i32)))
  (import "env" "tick" (func $tick))
  (type $v (func))
  (memory 4)
  (table 2 funcref)
  (elem (i32.const 0) func $noop $tick)
  (data $d "abc")
  (func $noop)
  (func (export "i32.store") (param i32) (i32.store (local.get 0) (i32.const 1)))
  (func (export "i64.store") (param i32) (i64.store (local.get 0) (i64.const 1)))
  (func (export "f32.store") (param i32) (f32.store (local.get 0) (f32.const 1)))
  (func (export "f64.store") (param i32) (f64.store (local.get 0) (f64.const 1)))
  (func (export "i32.store8") (param i32) (i32.store8 (local.get 0) (i32.const 1)))
  (func (export "i32.store16") (param i32) (i32.store16 (local.get 0) (i32.const 1)))
  (func (export "i64.store8") (param i32) (i64.store8 (local.get 0) (i64.const 1)))
  (func (export "i64.store16") (param i32) (i64.store16 (local.get 0) (i64.const 1)))
  (func (export "i64.store32") (param i32) (i64.store32 (local.get 0) (i64.const 1)))
  (func (export "v128.store") (param i32) (v128.store (local.get 0) (v128.const i64x2 1 1)))
  (func (export "v128.store8_lane") (param i32) (v128.store8_lane 3 (local.get 0) (v128.const i64x2 1 1)))
  (func (export "v128.store16_lane") (param i32) (v128.store16_lane 1 (local.get 0) (v128.const i64x2 1 1)))
  (func (export "v128.store32_lane") (param i32) (v128.store32_lane 2 (local.get 0) (v128.const i64x2 1 1)))
  (func (export "v128.store64_lane") (param i32) (v128.store64_lane 1 (local.get 0) (v128.const i64x2 1 1)))
  (func (export "offset") (param i32) (i32.store offset=40960 (local.get 0) (i32.const 1)))
  (func (export "callee") (param i32) (call $store (local.get 0)))
  (func $store (param i32) (i32.store (local.get 0) (i32.const 1)))
  (func (export "early return") (param i32)
    (block (block (i32.store (local.get 0) (i32.const 1)) (return)))
    (i32.store (i32.const 0) (i32.const 1)))
  (func (export "br_table out") (param i32)
    (block (i32.store (local.get 0) (i32.const 1)) (br_table 1 1 (i32.const 0))) ;; the function's label
    (unreachable))
  (func (export "loop") (param i32) (local $i i32)
    (loop $l
      (i32.store8 (i32.add (local.get 0) (local.get $i)) (i32.const 1))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 8192)))))
  (func (export "load only") (param i32) (drop (i32.load (local.get 0))))
  (func (export "memory.fill") (param i32) (memory.fill (local.get 0) (i32.const 1) (i32.const 1)))
  (func (export "memory.copy") (param i32) (memory.copy (local.get 0) (i32.const 0) (i32.const 1)))
  (func (export "memory.init") (param i32) (memory.init $d (local.get 0) (i32.const 0) (i32.const 1)))
  (func (export "tracked import") (param i32) (call $log (local.get 0)))
  (func (export "untracked import") (param i32) (call $tick))
  (func (export "call_indirect") (param i32) (call_indirect (type $v) (i32.const 0))))`

// TestWrittenRecordsEveryWrite: each way of writing memory sets the bit of the chunk it
// writes (a store) or every bit (a bulk operation, a call of an import the host does not
// track, a call_indirect that could reach one), and reading memory sets none.
func TestWrittenRecordsEveryWrite(t *testing.T) {
	res, err := InstrumentWith(wat(t, writtenModule), Options{Written: true, Tracked: func(module, name string) bool { return name == "log" }})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Written {
		t.Fatal("Result.Written is false for a module of 4 pages")
	}
	wasmValidate(t, res.Wasm)
	const all = ^uint64(0)
	chunk := func(i uint) uint64 { return 1 << i }
	cases := []struct {
		fn   string
		addr uint32
		want uint64
	}{
		{"i32.store", 0, chunk(0)},
		{"i32.store", 4094, chunk(0)}, // straddles chunks 0 and 1: the host restores both
		{"i64.store", 8192, chunk(2)},
		{"f32.store", 12288, chunk(3)},
		{"f64.store", 65536, chunk(16)},
		{"i32.store8", 262143, chunk(63)},
		{"i32.store16", 20480, chunk(5)},
		{"i64.store8", 24576, chunk(6)},
		{"i64.store16", 28672, chunk(7)},
		{"i64.store32", 32768, chunk(8)},
		{"v128.store", 36864, chunk(9)},
		{"v128.store8_lane", 40960, chunk(10)},
		{"v128.store16_lane", 45056, chunk(11)},
		{"v128.store32_lane", 49152, chunk(12)},
		{"v128.store64_lane", 53248, chunk(13)},
		{"offset", 100, chunk(10)}, // 100 + 40960
		{"callee", 57344, chunk(14)},
		{"early return", 61440, chunk(15)},
		{"br_table out", 4096, chunk(1)},
		{"loop", 4096, chunk(1) | chunk(2)},
		{"load only", 4096, 0},
		{"tracked import", 0, 0},
		{"memory.fill", 0, all},
		{"memory.copy", 0, all},
		{"memory.init", 0, all},
		{"untracked import", 0, all},
		{"call_indirect", 0, all},
	}
	for _, e := range engines {
		for _, c := range cases {
			inst := load(t, e.config(), res.Wasm)
			w := inst.global(WrittenExport)
			if got := w.Get(); got != 0 {
				t.Fatalf("%s: written is %#x after instantiation", e.name, got)
			}
			inst.mustCall(c.fn, uint64(c.addr))
			if got := w.Get(); got != c.want {
				t.Errorf("%s: %s(%d) leaves written %#x, want %#x", e.name, c.fn, c.addr, got, c.want)
			}
		}
	}
}

// TestWrittenOnlyForSmallMemories: the written global exists only when asked for and when
// the module's memory starts at most WrittenChunks chunks large.
func TestWrittenOnlyForSmallMemories(t *testing.T) {
	for _, c := range []struct {
		memory string
		opts   Options
		want   bool
	}{
		{"(memory 1)", Options{Written: true}, true},
		{"(memory 4)", Options{Written: true}, true},
		{"(memory 5)", Options{Written: true}, false},
		{"", Options{Written: true}, false},
		{"(memory 1)", Options{}, false},
	} {
		res, err := InstrumentWith(wat(t, fmt.Sprintf(`(module %s (func (export "f")))`, c.memory)), c.opts)
		if err != nil {
			t.Fatal(err)
		}
		wasmValidate(t, res.Wasm)
		_, exported := exportsOf(t, res.Wasm)[WrittenExport]
		if res.Written != c.want || exported != c.want {
			t.Errorf("%q, Written %v: Result.Written %v, exported %v, want %v", c.memory, c.opts.Written, res.Written, exported, c.want)
		}
	}
}

// TestInvalidIndicesRefused: code that names a local past the function's own, or branches
// past the function's label, is invalid as it stands, but would be valid after the rewrite,
// where such a local is one of the rewrite's (the written record, say) and such a label
// skips the function's exit (where the record and the call depth are updated). The rewrite
// refuses both, since the engine only ever validates its output.
func TestInvalidIndicesRefused(t *testing.T) {
	for name, body := range map[string]string{
		"local.set past the locals":  `(param i32) (local i32) (i32.store (local.get 0) (i32.const 1)) (local.set 2 (i32.const 0))`,
		"local.get past the locals":  `(drop (local.get 0))`,
		"local.tee past the locals":  `(param i32) (drop (local.tee 1 (i32.const 0)))`,
		"br past the function":       `(br 1)`,
		"br_if past the function":    `(block (br_if 2 (i32.const 1)))`,
		"br_table past the function": `(block (br_table 0 2 (i32.const 1)))`,
	} {
		t.Run(name, func(t *testing.T) {
			in := wat(t, `(module (memory 1) (func (export "f") `+body+`))`, "--no-check")
			for _, opts := range []Options{{}, {Written: true}} {
				if _, err := InstrumentWith(in, opts); !errors.Is(err, ErrMalformed) {
					t.Errorf("written %v: %v, want it refused as malformed", opts.Written, err)
				}
			}
		})
	}
}
