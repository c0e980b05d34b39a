package rewrite

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// dirtyModule has one exported function per way of changing an instance's state; the test
// calls each in a fresh instance and reads the dirty global afterwards. env.tick is the
// stateful import, env.log an ordinary one.
const dirtyModule = `(module
  (import "env" "tick" (func $tick))
  (import "env" "log" (func $log (param i32)))
  (type $v (func))
  (memory 1)
  (table $t 4 funcref)
  (table $u 4 funcref)
  (global $g (mut i32) (i32.const 1))
  (global $h (mut i64) (i64.const 2))
  (global $k f64 (f64.const 3))
  (data $d "abc")
  (elem $e func $noop)
  (elem (table $t) (i32.const 0) func $noop)
  (func $noop)
  (func (export "store") (i32.store (i32.const 0) (i32.const 9)))
  (func (export "global_set") (global.set $g (i32.const 2)))
  (func (export "memory_grow") (drop (memory.grow (i32.const 1))))
  (func (export "memory_fill") (memory.fill (i32.const 0) (i32.const 1) (i32.const 100)))
  (func (export "memory_init") (memory.init $d (i32.const 0) (i32.const 0) (i32.const 3)))
  (func (export "table_get") (drop (table.get $t (i32.const 0))))
  (func (export "call_indirect") (call_indirect $t (type $v) (i32.const 0)))
  (func (export "ordinary_import") (call $log (i32.const 1)))
  (func (export "table_set") (table.set $t (i32.const 1) (ref.func $noop)))
  (func (export "table_grow") (drop (table.grow $t (ref.null func) (i32.const 1))))
  (func (export "table_fill") (table.fill $t (i32.const 0) (ref.null func) (i32.const 2)))
  (func (export "table_copy") (table.copy $u $t (i32.const 0) (i32.const 0) (i32.const 1)))
  (func (export "table_init") (table.init $t $e (i32.const 2) (i32.const 0) (i32.const 1)))
  (func (export "elem_drop") (elem.drop $e))
  (func (export "data_drop") (data.drop $d))
  (func (export "stateful_import") (call $tick))
  (func (export "stateful_import_in_a_branch") (param i32)
    (if (local.get 0) (then (call $tick)))))`

func TestDirtyMarksStateTheHostCannotRestore(t *testing.T) {
	in := wat(t, dirtyModule)
	res, err := InstrumentWith(in, Options{Stateful: func(module, name string) bool { return module == "env" && name == "tick" }})
	if err != nil {
		t.Fatal(err)
	}
	wasmValidate(t, res.Wasm)
	if want := []Global{{GlobalPrefix + "0", 0x7F}, {GlobalPrefix + "1", 0x7E}}; !slices.Equal(res.Globals, want) {
		t.Errorf("Globals %v, want %v (the mutable ones only)", res.Globals, want)
	}
	cases := []struct {
		fn    string
		args  []uint64
		dirty bool
	}{
		{"store", nil, false},
		{"global_set", nil, false},
		{"memory_grow", nil, false}, // the host compares the memory's size
		{"memory_fill", nil, false},
		{"memory_init", nil, false},
		{"table_get", nil, false},
		{"call_indirect", nil, false}, // no stateful import is in a table
		{"ordinary_import", nil, false},
		{"stateful_import_in_a_branch", []uint64{0}, false},
		{"table_set", nil, true},
		{"table_grow", nil, true},
		{"table_fill", nil, true},
		{"table_copy", nil, true},
		{"table_init", nil, true},
		{"elem_drop", nil, true},
		{"data_drop", nil, true},
		{"stateful_import", nil, true},
		{"stateful_import_in_a_branch", []uint64{1}, true},
	}
	for _, e := range engines {
		for _, c := range cases {
			inst := load(t, e.config(), res.Wasm)
			if got := inst.global(DirtyExport).Get(); got != 0 {
				t.Fatalf("%s: dirty is %d after instantiation", e.name, got)
			}
			inst.mustCall(c.fn, c.args...)
			if got := inst.global(DirtyExport).Get() != 0; got != c.dirty {
				t.Errorf("%s: %s%v leaves dirty %v, want %v", e.name, c.fn, c.args, got, c.dirty)
			}
		}
	}
}

// TestDirtyThroughTables: once a stateful import is in a table (or could be: referenced by
// an element segment, a global initialiser or an export), every call_indirect sets the
// dirty global, since the rewrite cannot tell which function a call_indirect reaches.
func TestDirtyThroughTables(t *testing.T) {
	stateful := Options{Stateful: func(_, name string) bool { return name == "tick" }}
	for name, decl := range map[string]string{
		"element segment":    `(elem (table $t) (i32.const 1) func $tick)`,
		"declarative":        `(elem declare func $tick)`,
		"global initialiser": `(global funcref (ref.func $tick))`,
		"export":             `(export "tock" (func $tick))`,
	} {
		t.Run(name, func(t *testing.T) {
			in := wat(t, `(module
  (import "env" "tick" (func $tick))
  (type $v (func))
  (table $t 2 funcref)
  `+decl+`
  (elem (table $t) (i32.const 0) func $noop)
  (func $noop)
  (func (export "call_slot0") (call_indirect $t (type $v) (i32.const 0))))`)
			res, err := InstrumentWith(in, stateful)
			if err != nil {
				t.Fatal(err)
			}
			wasmValidate(t, res.Wasm)
			for _, e := range engines {
				inst := load(t, e.config(), res.Wasm)
				inst.mustCall("call_slot0")
				if inst.global(DirtyExport).Get() == 0 {
					t.Errorf("%s: call_indirect with %s left dirty unset", e.name, name)
				}
			}
		})
	}
}

// TestReservedExportPrefix: every name starting __wasmfleet_ is the host's, including the
// ones the rewrite gives the module's globals.
func TestReservedExportPrefix(t *testing.T) {
	for _, name := range []string{DirtyExport, GlobalPrefix + "0", "__wasmfleet_anything"} {
		_, err := instrument(wat(t, `(module (global (export "`+name+`") (mut i32) (i32.const 0)))`))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), name) {
			t.Errorf("export %q: %v, want it refused as reserved", name, err)
		}
	}
}
