// Package rewrite instruments a WebAssembly binary so that the host can stop it at any time,
// whatever the guest code is doing and however the Go scheduler feels about it.
//
// At the entry of every function and the head of every loop it adds a check that counts down
// a fuel global (exported as FuelExport) and, when the count drops below zero, calls a host
// function (YieldModule.YieldName, an import the rewrite adds). The host function is where
// the host decides: it checks the deadline and whether the event was stopped, and either
// refills the fuel or ends the call. Because every call and every loop iteration passes a
// check, no code runs unchecked, loops or not (an exponential call tree without loops
// included); because the guest enters Go every so many checks, a guest never
// holds its thread away from the Go scheduler (compiled code cannot be preempted, so a
// stop-the-world garbage collection would otherwise wait for it, and with it the timer meant
// to stop it). To stop a guest at once the host sets the fuel to zero. This is wasmtime's
// fuel and epoch interruption, done as a load-time rewrite so that it works the same on both
// of wazero's engines.
//
// Bulk operations (memory.fill, memory.copy, memory.init, table.fill, table.copy,
// table.init, table.grow) are charged by their length before they run (see
// BulkBytesPerFuel), so that no single check can stand for milliseconds of work.
//
// It also bounds the call stack (see StackBudget), moves the start function (which wazero
// runs inside instantiation, where no deadline can reach it) to an export (StartExport) that
// the host calls with its deadline armed, and reports what the host must check before
// compiling: imports, initial memory size and table sizes.
//
// So that the host can reuse an instance for many events and still give each one the state
// right after initialisation, it exports every mutable global of the module (GlobalPrefix
// and the global's index; Result.Globals lists them), whose values the host saves and puts
// back along with memory, and it sets a third global, DirtyExport, before any instruction
// that changes state the host cannot put back: table.set, table.grow, table.fill,
// table.copy, table.init, elem.drop, data.drop, and calls of the imported functions that
// Options.Stateful names (also through call_indirect, when such a function is in a table or
// otherwise referenced). An instance whose dirty global is set is discarded, not reused.
// Asked to (Options.Written), it also records which 4 KiB chunks of a small memory the code
// writes, in a fourth global (WrittenExport), so that the host restores only those.
//
// The added globals come after the module's own, and its code is checked never to name them.
// The added import comes after the module's imported functions, so every index of a function
// the module defines moves up by one: in calls, ref.func, exports, element segments, global
// initialisers and the name section.
package rewrite

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Names the rewrite adds. A module that exports one of the export names, or imports anything
// from YieldModule, is refused.
const (
	FuelExport    = "__wasmfleet_fuel"
	StartExport   = "__wasmfleet_start"
	DepthExport   = "__wasmfleet_depth"
	DirtyExport   = "__wasmfleet_dirty"
	WrittenExport = "__wasmfleet_written"
	GlobalPrefix  = "__wasmfleet_global_" // followed by the global's index in decimal
	YieldModule   = "__wasmfleet"
	YieldName     = "yield"
)

// reservedPrefix starts every name the rewrite exports; a module may export none of them.
const reservedPrefix = "__wasmfleet_"

// YieldEvery is the fuel a guest starts with: the number of function entries and loop
// iterations before its first call of the yield function. The host refills the fuel at each
// yield, by as much as it likes.
const YieldEvery = 1024

// StackBudget bounds the call stack of one instance, in units of roughly one native stack
// slot: each call adds its function's weight (2 + params + locals + code bytes / 8) on entry
// and takes it off on exit. Past the budget the call traps and the depth global, exported as
// DepthExport, stays above StackBudget, which is how the host tells a stack overflow from
// other traps. Without it wazero's compiler grows a deep recursion's stack to about 100 MB
// per instance before it gives up.
const StackBudget = 1 << 18

// MaxTableElements bounds tables (declared minimum and growth), so that a module cannot make
// the host allocate a huge table.
const MaxTableElements = 1 << 16

// Options tune the rewrite. The zero value marks no import as stateful.
type Options struct {
	// Stateful reports whether calling the imported function module.name may change state of
	// the instance that lives outside its memory and globals (WASI's file descriptor table,
	// for example). Each call of such a function sets the dirty global first.
	Stateful func(module, name string) bool
	// Written asks for a fourth global, exported as WrittenExport: an i64 whose bit i is set
	// when the code may have written memory's bytes [i*WrittenChunk, (i+2)*WrittenChunk) (a
	// store may straddle two chunks). Every store sets its bit, every memory.init,
	// memory.copy and memory.fill sets all bits, and so does every call of an imported
	// function that Tracked does not name (also through call_indirect, when such a function
	// is in a table or otherwise referenced). The host clears the global, and sets the bits
	// of what its own functions write. A bit is set by the address modulo
	// WrittenChunks*WrittenChunk, so the global means something only while memory is at
	// most that size; the rewrite adds it only when the module's memory starts no larger.
	Written bool
	// Tracked reports whether the host records what the imported function module.name
	// writes to memory in the written global itself.
	Tracked func(module, name string) bool
}

// The written global's granularity (see Options.Written): 64 chunks of 4 KiB.
const (
	WrittenChunk  = 4096
	WrittenChunks = 64
)

// Global is a mutable global of the module, exported for the host under Export.
type Global struct {
	Export string
	Type   byte // value type: 0x7F i32, 0x7E i64, 0x7D f32, 0x7C f64, 0x7B v128, 0x70 funcref, 0x6F externref
}

// Import is one import of the module.
type Import struct {
	Module, Name string
	Kind         byte // 0 func, 1 table, 2 memory, 3 global
}

// Result is the instrumented module and what the host needs to know about it.
type Result struct {
	Wasm []byte
	// Imports lists every import of the original module, in order.
	Imports []Import
	// MinMemoryPages is the declared initial size of the module's own memory (0 if none).
	MinMemoryPages uint64
	// HasMemory is true when the module defines a memory.
	HasMemory bool
	// HasStart is true when the module had a start function, now exported as StartExport.
	HasStart bool
	// Globals lists the module's own mutable globals, in index order, each exported under
	// GlobalPrefix and its index. The rewrite's own globals are not in the list.
	Globals []Global
	// Written is true when the module has the written global (see Options.Written).
	Written bool
}

// ErrMalformed is wrapped by every error about the binary itself.
var ErrMalformed = errors.New("malformed wasm")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// order is the position of each known section id in a module.
var order = map[byte]int{secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6,
	secGlobal: 7, secExport: 8, secStart: 9, secElement: 10, secDataCount: 11, secCode: 12, secData: 13}

type section struct {
	id   byte
	body []byte
}

// Instrument rewrites wasm as described in the package comment, with no stateful imports.
func Instrument(wasm []byte) (*Result, error) { return InstrumentWith(wasm, Options{}) }

// InstrumentWith rewrites wasm as described in the package comment.
func InstrumentWith(wasm []byte, opts Options) (*Result, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, malformed("no wasm magic number")
	}
	if !bytes.Equal(wasm[4:8], []byte{1, 0, 0, 0}) {
		return nil, malformed("unsupported binary version % x (want 1)", wasm[4:8])
	}
	var secs []section
	r := &reader{b: wasm, off: 8}
	last := 0
	for !r.done() {
		id := r.byte()
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, r.err
		}
		if id != secCustom {
			pos, ok := order[id]
			if !ok {
				return nil, malformed("unknown section id %d", id)
			}
			if pos <= last {
				return nil, malformed("section %d out of order or repeated", id)
			}
			last = pos
		}
		secs = append(secs, section{id, body})
	}

	res := &Result{}
	var importedGlobals, importedFuncs, definedGlobals uint32
	var stateful []bool   // by imported function index
	var untracked []bool  // by imported function index
	escapes := false      // a stateful import is referenced (tables, ref.func, exports)
	writesEscape := false // an untracked import is referenced
	// refs sees every function reference outside code (element segments, global
	// initialisers); ref.func in code must name one of those or an export to validate.
	refs := &instrumenter{onRef: func(idx uint32) {
		if idx < uint32(len(stateful)) && stateful[idx] {
			escapes = true
		}
		if idx < uint32(len(untracked)) && untracked[idx] {
			writesEscape = true
		}
	}}
	var types []funcType
	var funcTypes []uint32 // type index of each defined function
	start := int64(-1)
	var tables []byte // the rewritten table section
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case secType:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				if form := r.byte(); form != 0x60 {
					return nil, malformed("type %d has form 0x%02x (only function types are supported)", i, form)
				}
				var ft funcType
				ft.params = r.u32()
				for j := uint32(0); j < ft.params && r.err == nil; j++ {
					r.valtype()
				}
				nr := r.u32()
				for j := uint32(0); j < nr && r.err == nil; j++ {
					ft.results = append(ft.results, r.valtype())
				}
				types = append(types, ft)
			}
		case secFunction:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				funcTypes = append(funcTypes, r.u32())
			}
		case secImport:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				imp := Import{Module: r.name(), Name: r.name(), Kind: r.byte()}
				if imp.Module == YieldModule && r.err == nil {
					return nil, malformed("module imports %s.%s: the import module %q is reserved", imp.Module, imp.Name, YieldModule)
				}
				switch imp.Kind {
				case 0:
					r.u32()
					importedFuncs++
					stateful = append(stateful, opts.Stateful != nil && opts.Stateful(imp.Module, imp.Name))
					untracked = append(untracked, opts.Tracked == nil || !opts.Tracked(imp.Module, imp.Name))
				case 1:
					r.valtype()
					r.limits()
				case 2:
					r.limits()
				case 3:
					r.valtype()
					r.byte()
					importedGlobals++
				default:
					r.fail("import %s.%s has unknown kind %d", imp.Module, imp.Name, imp.Kind)
				}
				res.Imports = append(res.Imports, imp)
			}
		case secMemory:
			n := r.u32()
			if n > 1 {
				return nil, malformed("%d memories (at most one)", n)
			}
			if n == 1 {
				flags, min, _ := r.limits()
				if flags&2 != 0 {
					return nil, malformed("shared memory is not supported")
				}
				if flags&4 != 0 {
					return nil, malformed("64-bit memory is not supported")
				}
				res.HasMemory, res.MinMemoryPages = true, min
			}
		case secTable:
			// Every table gets a maximum of at most MaxTableElements, so that table.grow
			// cannot make the host allocate without bound.
			n := r.u32()
			tables = appendU32(nil, n)
			for i := uint32(0); i < n && r.err == nil; i++ {
				if r.peek() == 0x40 {
					return nil, malformed("table %d has an initialiser expression, which is not supported", i)
				}
				rt := r.valtype()
				flags, min, max := r.limits()
				if flags&^1 != 0 && r.err == nil {
					return nil, malformed("table %d has limits flags 0x%02x (only 32-bit, unshared tables)", i, flags)
				}
				if min > MaxTableElements {
					return nil, fmt.Errorf("table %d declares %d elements, more than the %d allowed", i, min, MaxTableElements)
				}
				if flags&1 == 0 || max > MaxTableElements {
					max = MaxTableElements
				}
				tables = append(tables, rt, 0x01)
				tables = appendU32(tables, uint32(min))
				tables = appendU32(tables, uint32(max))
			}
		case secGlobal:
			definedGlobals = r.u32()
			for i := uint32(0); i < definedGlobals && r.err == nil; i++ {
				vt, mut := r.valtype(), r.byte()
				refs.constExpr(nil, r)
				if mut == 1 && r.err == nil {
					res.Globals = append(res.Globals, Global{Export: GlobalPrefix + strconv.FormatUint(uint64(importedGlobals+i), 10), Type: vt})
				}
			}
		case secExport:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				name := r.name()
				kind := r.byte()
				idx := r.u32()
				if strings.HasPrefix(name, reservedPrefix) && r.err == nil {
					return nil, malformed("module exports the reserved name %q (names starting %s are the host's)", name, reservedPrefix)
				}
				if kind == 0 {
					refs.onRef(idx)
				}
			}
		case secElement:
			if _, err := refs.elements(s.body); err != nil {
				return nil, fmt.Errorf("section %d: %w", s.id, err)
			}
		case secStart:
			start = int64(r.u32())
		}
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, r.err)
		}
	}
	fuel := importedGlobals + definedGlobals // index of the globals we add
	ins := &instrumenter{fuel: fuel, depth: fuel + 1, dirty: fuel + 2, yield: importedFuncs,
		types: types, funcTypes: funcTypes, extraTypes: map[string]uint32{},
		stateful: stateful, indirectStateful: escapes, globals: res.Globals}
	if opts.Written && res.HasMemory && res.MinMemoryPages*65536 <= WrittenChunks*WrittenChunk {
		ins.track, ins.written = true, fuel+3
		ins.untracked, ins.indirectUntracked = untracked, writesEscape
		res.Written = true
	}
	yieldType := ins.funcType0()

	// Instrument the code first: it may need block types that the type section lacks.
	code := map[int][]byte{}
	for i, s := range secs {
		if s.id == secCode {
			body, err := ins.code(s.body)
			if err != nil {
				return nil, err
			}
			code[i] = body
		}
	}
	if start >= 0 {
		start = int64(ins.shift(uint32(start)))
	}

	// Sections the module lacks but the rewrite needs are made from an empty body, in order.
	var out []section
	pending := []byte{secType, secImport, secGlobal, secExport}
	emitBefore := func(pos int) {
		for len(pending) > 0 && order[pending[0]] < pos {
			id := pending[0]
			pending = pending[1:]
			body, err := ins.section(id, nil, yieldType, start)
			if err != nil {
				panic(err) // empty bodies cannot be malformed
			}
			out = append(out, section{id, body})
		}
	}
	for i, s := range secs {
		if s.id != secCustom {
			emitBefore(order[s.id])
		}
		var body []byte
		var err error
		switch s.id {
		case secType, secImport, secGlobal, secExport:
			pending = pending[1:] // emitBefore left this one first
			body, err = ins.section(s.id, s.body, yieldType, start)
		case secStart:
			res.HasStart = true // dropped: exported as StartExport instead
			continue
		case secCode:
			body = code[i]
		case secElement:
			body, err = ins.elements(s.body)
		case secTable:
			body = tables
		case secCustom:
			body = ins.custom(s.body)
			if body == nil {
				continue
			}
		default:
			body = s.body
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, err)
		}
		out = append(out, section{s.id, body})
	}
	emitBefore(len(order) + 1)

	w := append([]byte(nil), wasm[:8]...)
	for _, s := range out {
		w = append(w, s.id)
		w = appendU32(w, uint32(len(s.body)))
		w = append(w, s.body...)
	}
	res.Wasm = w
	return res, nil
}

// section returns the rewritten body of a type, import, global or export section; body is
// nil for a section the module lacks.
func (in *instrumenter) section(id byte, body []byte, yieldType uint32, start int64) ([]byte, error) {
	r := &reader{b: body}
	n := uint32(0)
	if body != nil {
		n = r.u32()
	}
	var out []byte
	switch id {
	case secType:
		out = appendU32(nil, n+uint32(len(in.newTypes)))
		out = append(out, body[r.off:]...)
		for _, ft := range in.newTypes {
			out = append(out, 0x60)
			out = appendU32(out, uint32(len(ft.params)))
			out = append(out, ft.params...)
			out = appendU32(out, uint32(len(ft.results)))
			out = append(out, ft.results...)
		}
	case secImport:
		out = appendU32(nil, n+1)
		out = append(out, body[r.off:]...)
		out = appendName(out, YieldModule)
		out = appendName(out, YieldName)
		out = append(out, 0x00)
		out = appendU32(out, yieldType)
	case secGlobal:
		add := uint32(3)
		if in.track {
			add++
		}
		out = appendU32(nil, n+add)
		for i := uint32(0); i < n && r.err == nil; i++ {
			out = append(out, r.valtype(), r.byte()) // value type, mutability
			out = in.constExpr(out, r)
		}
		out = append(out, 0x7F, 0x01, 0x41) // fuel
		out = appendS33(out, YieldEvery)
		out = append(out, 0x0B, 0x7F, 0x01, 0x41, 0x00, 0x0B) // depth
		out = append(out, 0x7F, 0x01, 0x41, 0x00, 0x0B)       // dirty
		if in.track {
			out = append(out, 0x7E, 0x01, 0x42, 0x00, 0x0B) // written
		}
	case secExport:
		add := uint32(3 + len(in.globals))
		if start >= 0 {
			add++
		}
		if in.track {
			add++
		}
		out = appendU32(nil, n+add)
		for i := uint32(0); i < n && r.err == nil; i++ {
			out = appendName(out, r.name())
			kind := r.byte()
			idx := r.u32()
			if kind == 0 {
				idx = in.shift(idx)
			}
			out = append(out, kind)
			out = appendU32(out, idx)
		}
		out = appendName(out, FuelExport)
		out = append(out, 0x03)
		out = appendU32(out, in.fuel)
		out = appendName(out, DepthExport)
		out = append(out, 0x03)
		out = appendU32(out, in.depth)
		out = appendName(out, DirtyExport)
		out = append(out, 0x03)
		out = appendU32(out, in.dirty)
		if in.track {
			out = appendName(out, WrittenExport)
			out = append(out, 0x03)
			out = appendU32(out, in.written)
		}
		for _, g := range in.globals {
			idx, _ := strconv.ParseUint(strings.TrimPrefix(g.Export, GlobalPrefix), 10, 32)
			out = appendName(out, g.Export)
			out = append(out, 0x03)
			out = appendU32(out, uint32(idx))
		}
		if start >= 0 {
			out = appendName(out, StartExport)
			out = append(out, 0x00)
			out = appendU32(out, uint32(start))
		}
	}
	if r.err == nil && !r.done() && id != secType && id != secImport {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return out, r.err
}

// elements rewrites the function indices of an element section.
func (in *instrumenter) elements(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		out = appendU32(out, flags)
		if flags > 7 {
			r.fail("element segment %d has unknown flags %d", i, flags)
			break
		}
		if flags&2 != 0 && flags&1 == 0 { // explicit table index
			out = appendU32(out, r.u32())
		}
		if flags&1 == 0 { // active: offset expression
			out = in.constExpr(out, r)
		}
		if flags&3 != 0 { // element kind (0x00) or reference type
			if flags&4 == 0 {
				if k := r.byte(); k != 0 && r.err == nil {
					r.fail("element segment %d has element kind 0x%02x", i, k)
				}
				out = append(out, 0)
			} else {
				out = append(out, r.valtype())
			}
		}
		count := r.u32()
		out = appendU32(out, count)
		for j := uint32(0); j < count && r.err == nil; j++ {
			if flags&4 == 0 {
				out = appendU32(out, in.ref(r.u32()))
			} else {
				out = in.constExpr(out, r)
			}
		}
	}
	if r.err == nil && !r.done() {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return out, r.err
}

// constExpr copies a constant expression up to and including its end, rewriting ref.func.
func (in *instrumenter) constExpr(out []byte, r *reader) []byte {
	for r.err == nil {
		op := r.byte()
		out = append(out, op)
		switch op {
		case 0x0B:
			return out
		case 0xD2:
			out = appendU32(out, in.ref(r.u32()))
		default:
			at := r.off
			skipImmediates(r, op)
			out = append(out, r.b[at:r.off]...)
		}
	}
	return out
}

// custom returns a custom section's body with the function indices of the "name" section
// moved; it returns nil (drop the section) for a name section it cannot read, which only
// costs the names in stack traces.
func (in *instrumenter) custom(body []byte) []byte {
	r := &reader{b: body}
	if r.name() != "name" || r.err != nil {
		return body
	}
	out := append([]byte(nil), body[:r.off]...)
	for !r.done() {
		id := r.byte()
		sub := r.bytes(int(r.u32()))
		if r.err != nil {
			return nil
		}
		if id < 1 || id > 3 { // module name, and names of things other than functions
			out = append(out, id)
			out = appendU32(out, uint32(len(sub)))
			out = append(out, sub...)
			continue
		}
		// 1: function names (idx name)*; 2: local names, 3: labels: (idx (idx name)*)*
		sr := &reader{b: sub}
		n := sr.u32()
		var nb []byte
		nb = appendU32(nb, n)
		for i := uint32(0); i < n && sr.err == nil; i++ {
			nb = appendU32(nb, in.shift(sr.u32()))
			if id == 1 {
				nb = appendName(nb, sr.name())
				continue
			}
			m := sr.u32()
			nb = appendU32(nb, m)
			for j := uint32(0); j < m && sr.err == nil; j++ {
				nb = appendU32(nb, sr.u32())
				nb = appendName(nb, sr.name())
			}
		}
		if sr.err != nil || !sr.done() {
			return nil
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(nb)))
		out = append(out, nb...)
	}
	return out
}

type funcType struct {
	params  uint32
	results []byte // value types
}

// instrumenter rewrites the module.
type instrumenter struct {
	fuel, depth, dirty uint32 // indices of the added globals
	yield              uint32 // index of the added import; defined functions from here move up one
	types              []funcType
	funcTypes          []uint32
	extraTypes         map[string]uint32 // types added, by their encoding
	newTypes           []newType
	globals            []Global // the module's mutable globals, exported
	stateful           []bool   // by imported function index: a call sets the dirty global
	indirectStateful   bool     // a stateful import may be reached through call_indirect
	onRef              func(idx uint32)

	// Tracking memory writes (Options.Written).
	track             bool
	written           uint32 // index of the written global
	untracked         []bool // by imported function index: a call sets every written bit
	indirectUntracked bool   // an untracked import may be reached through call_indirect
	body              []byte // a function's instrumented code, before its locals are known
}

// ref returns the new index of function idx, referenced from outside code (an element
// segment or a constant expression), and tells onRef.
func (in *instrumenter) ref(idx uint32) uint32 {
	if in.onRef != nil {
		in.onRef(idx)
	}
	return in.shift(idx)
}

// markDirty appends: global.set $dirty (i32.const 1).
func (in *instrumenter) markDirty(out []byte) []byte {
	out = append(out, 0x41, 0x01, 0x24)
	return appendU32(out, in.dirty)
}

// dirties reports whether 0xFC sub-opcode sub changes state that the host cannot restore:
// data.drop, table.init, elem.drop, table.copy, table.grow, table.fill.
func dirties(sub uint32) bool {
	switch sub {
	case 9, 12, 13, 14, 15, 17:
		return true
	}
	return false
}

type newType struct{ params, results []byte }

// shift returns the new index of function idx.
func (in *instrumenter) shift(idx uint32) uint32 {
	if idx >= in.yield {
		return idx + 1
	}
	return idx
}

// addType returns the index of a type params -> results, added after the module's types.
func (in *instrumenter) addType(params, results []byte) uint32 {
	key := string(params) + "->" + string(results)
	idx, ok := in.extraTypes[key]
	if !ok {
		idx = uint32(len(in.types) + len(in.newTypes))
		in.extraTypes[key] = idx
		in.newTypes = append(in.newTypes, newType{append([]byte(nil), params...), append([]byte(nil), results...)})
	}
	return idx
}

// funcType0 returns the index of a type [] -> [], the module's own if it has one.
func (in *instrumenter) funcType0() uint32 {
	for i, t := range in.types {
		if t.params == 0 && len(t.results) == 0 {
			return uint32(i)
		}
	}
	return in.addType(nil, nil)
}

// blockType returns the encoding of a block type [] -> results.
func (in *instrumenter) blockType(results []byte) []byte {
	switch len(results) {
	case 0:
		return []byte{0x40}
	case 1:
		return []byte{results[0]}
	}
	return appendS33(nil, int64(in.addType(nil, results)))
}

func (in *instrumenter) code(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	if int(n) != len(in.funcTypes) {
		return nil, malformed("code section has %d bodies for %d functions", n, len(in.funcTypes))
	}
	out := appendU32(make([]byte, 0, len(body)+len(body)/4), n)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("code of function %d: %w", i, r.err)
		}
		ti := in.funcTypes[i]
		if int(ti) >= len(in.types) {
			return nil, malformed("function %d has type %d, which does not exist", i, ti)
		}
		var err error
		fn, err = in.function(fn[:0], code, in.types[ti])
		if err != nil {
			return nil, fmt.Errorf("code of function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if !r.done() {
		return nil, malformed("code section has %d trailing bytes", len(r.b)-r.off)
	}
	return out, nil
}

// function rewrites one body: locals; fuel check; depth += weight; budget check;
// block { original body, with return turned into a branch out of the block }; depth -= weight.
func (in *instrumenter) function(out, code []byte, ft funcType) ([]byte, error) {
	r := &reader{b: code}
	groups := r.u32()
	entries := r.off
	locals := uint64(0)
	for i := uint32(0); i < groups && r.err == nil; i++ {
		locals += uint64(r.u32())
		r.valtype()
	}
	if r.err != nil {
		return nil, r.err
	}
	localsEnd := r.off
	weight := 2 + uint64(ft.params) + locals + uint64(len(code))/8
	if in.track {
		weight += scratchLocals
	}
	if weight > StackBudget/16 {
		return nil, fmt.Errorf("a function needs %d stack units, more than the %d one call may take", weight, StackBudget/16)
	}
	// Locals after the module's own (no index moves): an i32, the scratch register of the
	// bulk-operation charge; when tracking writes, also the store's address (the same i32),
	// the function's written bits (an i64, added to the global when it returns) and a
	// register for the value of each type a store takes.
	if locals+scratchLocals > maxLocals {
		return nil, malformed("a function declares %d locals", locals)
	}
	scratch := ft.params + uint32(locals)
	s := storeLocals{addr: scratch, acc: scratch + 2, value: [5]uint32{scratch + 1, scratch + 3, scratch + 4, scratch + 5, scratch + 6}} // see scratchTypes
	marked := false                                                                                                                      // the function sets written bits
	usesV128 := false
	out, header := in.body[:0], out
	defer func() { in.body = out[:0] }()
	out = in.check(out)
	out = in.addDepth(out, 0x6A, uint32(weight)) // i32.add
	out = append(out, 0x23)
	out = appendU32(out, in.depth)
	out = append(out, 0x41)
	out = appendS33(out, StackBudget)
	out = append(out, 0x4B, 0x04, 0x40, 0x00, 0x0B) // i32.gt_u; if; unreachable; end
	out = append(out, 0x02)                         // block
	out = append(out, in.blockType(ft.results)...)

	nesting := 0 // open blocks inside the wrapper
	copied := r.off
	for !r.done() {
		at := r.off
		op := r.byte()
		switch {
		case op == 0x02 || op == 0x04: // block, if
			r.blocktype()
			nesting++
		case op == 0x03: // loop: check at its head
			r.blocktype()
			nesting++
			out = append(out, code[copied:r.off]...)
			out = in.check(out)
			copied = r.off
		case op == 0x0B: // end
			if nesting == 0 {
				if !r.done() {
					return nil, malformed("function body continues after its end")
				}
				out = append(out, code[copied:at]...)
				out = append(out, 0x0B) // end of the wrapper block
				out = in.addDepth(out, 0x6B, uint32(weight))
				if marked {
					out = in.flush(out, s.acc)
				}
				out = append(out, 0x0B)
				// Now the locals: the module's, then the rewrite's, one group each.
				added := scratchTypes[:1]
				if in.track && usesV128 {
					added = scratchTypes[:]
				} else if in.track {
					added = scratchTypes[:len(scratchTypes)-1]
				}
				header = appendU32(header, groups+uint32(len(added)))
				header = append(header, code[entries:localsEnd]...)
				for _, t := range added {
					header = append(header, 0x01, t)
				}
				return append(header, out...), nil
			}
			nesting--
		case op == 0x0F: // return: branch to the end of the wrapper instead
			out = append(out, code[copied:at]...)
			out = append(out, 0x0C)
			out = appendU32(out, uint32(nesting))
			copied = r.off
		case op == 0x10 || op == 0xD2: // call, ref.func: the function moved
			idx := r.u32()
			out = append(out, code[copied:at]...)
			if op == 0x10 && idx < uint32(len(in.stateful)) && in.stateful[idx] {
				out = in.markDirty(out)
			}
			if op == 0x10 && in.track && idx < uint32(len(in.untracked)) && in.untracked[idx] {
				out, marked = markAll(out, s.acc), true
			}
			out = append(out, op)
			out = appendU32(out, in.shift(idx))
			copied = r.off
		case op == 0x11 && (in.indirectStateful || in.indirectUntracked), op == 0x26: // call_indirect, table.set
			out = append(out, code[copied:at]...)
			if op == 0x26 || in.indirectStateful {
				out = in.markDirty(out)
			}
			if op == 0x11 && in.indirectUntracked {
				out, marked = markAll(out, s.acc), true
			}
			copied = at
			skipImmediates(r, op)
		case op >= 0x36 && op <= 0x3E && in.track: // stores
			out = append(out, code[copied:at]...)
			copied = at
			out, marked = s.mark(out, storeType[op-0x36], r.memarg()), true
		case op == 0xFD && in.track:
			sub := r.u32()
			if sub == 11 || sub >= 88 && sub <= 91 { // v128.store, v128.storeN_lane
				out = append(out, code[copied:at]...)
				copied = at
				out, marked, usesV128 = s.mark(out, 4, r.memarg()), true, true
				if sub != 11 {
					r.byte() // lane
				}
			} else {
				skipFDImmediates(r, sub)
			}
		case op == 0xFC:
			sub := r.u32()
			if bulk(sub) || dirties(sub) {
				out = append(out, code[copied:at]...)
				copied = at
			}
			if in.track && (sub == 8 || sub == 10 || sub == 11) { // memory.init, .copy, .fill
				out, marked = markAll(out, s.acc), true
			}
			if bulk(sub) {
				// Charge the operation's length before it runs: one unit of fuel per
				// BulkBytesPerFuel bytes or elements, then a check.
				out = in.charge(out, scratch)
			}
			if dirties(sub) {
				out = in.markDirty(out)
			}
			skipFCImmediates(r, sub)
		case op == 0x12 || op == 0x13:
			r.fail("tail calls are not supported")
		case op == 0x23 || op == 0x24: // global.get / global.set
			if idx := r.u32(); idx >= in.fuel && r.err == nil {
				return nil, malformed("instruction at %d names global %d, which does not exist", at, idx)
			}
		case op >= 0x20 && op <= 0x22: // local.get / set / tee: not the rewrite's own locals
			if idx := r.u32(); uint64(idx) >= uint64(ft.params)+locals && r.err == nil {
				return nil, malformed("instruction at %d names local %d, which does not exist", at, idx)
			}
		case op == 0x0C || op == 0x0D || op == 0x0E: // br, br_if, br_table
			// A label past the function's own would, after the rewrite, leave the wrapper
			// block, and with it the depth and the written record.
			labels := uint64(1)
			if op == 0x0E {
				labels += uint64(r.u32()) // and the default
			}
			for i := uint64(0); i < labels && r.err == nil; i++ {
				if l := r.u32(); l > uint32(nesting) && r.err == nil {
					return nil, malformed("branch at %d to label %d, which does not exist", at, l)
				}
			}
		default:
			skipImmediates(r, op)
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	return nil, malformed("function body has no end")
}

// scratchTypes are the types of the locals the rewrite adds to a function, after the
// module's own: the bulk charge's scratch (also a store's address; see storeLocals for the
// rest), and when it records writes, a store's i32 value, the written bits, a store's i64,
// f32, f64 and (only where a function stores one) v128 value.
var scratchTypes = [...]byte{0x7F, 0x7F, 0x7E, 0x7E, 0x7D, 0x7C, 0x7B}

// scratchLocals is the most locals the rewrite adds to a function.
const scratchLocals = uint64(len(scratchTypes))

// storeType is the value type of each store instruction, 0x36 to 0x3E, as an index into
// storeLocals.value: i32, i64, f32, f64 (and 4, v128).
var storeType = [...]int{0, 1, 2, 3, 0, 0, 1, 1, 1}

// storeLocals are the locals a function's store instrumentation uses.
type storeLocals struct {
	addr  uint32    // the store's address (the bulk charge's scratch; the two never overlap)
	acc   uint32    // i64: the bits this call of the function sets
	value [5]uint32 // the store's value, by type: i32, i64, f32, f64, v128
}

// mark appends, before a store of type t with memarg offset off ([addr, value] on the stack,
// and there again after): $acc |= 1 << ((addr + off) >> 12). The bit is taken modulo 64 (see
// Options.Written). A store whose address overflows traps, and the host discards the
// instance of an event that trapped, so an overflow needs no care.
func (s storeLocals) mark(out []byte, t int, off uint64) []byte {
	out = append(out, 0x21) // local.set $value
	out = appendU32(out, s.value[t])
	out = append(out, 0x21) // local.set $addr
	out = appendU32(out, s.addr)
	out = append(out, 0x20) // local.get $acc
	out = appendU32(out, s.acc)
	out = append(out, 0x42, 0x01, 0x20) // i64.const 1; local.get $addr
	out = appendU32(out, s.addr)
	out = append(out, 0xAD) // i64.extend_i32_u
	if off != 0 {
		out = append(out, 0x42) // i64.const off; i64.add
		out = appendS33(out, int64(off))
		out = append(out, 0x7C)
	}
	out = append(out, 0x42, 0x0C, 0x88, 0x86, 0x84, 0x21) // i64.const 12; i64.shr_u; i64.shl; i64.or; local.set $acc
	out = appendU32(out, s.acc)
	out = append(out, 0x20) // local.get $addr
	out = appendU32(out, s.addr)
	out = append(out, 0x20) // local.get $value
	return appendU32(out, s.value[t])
}

// markAll appends: $acc = -1, every bit set.
func markAll(out []byte, acc uint32) []byte {
	out = append(out, 0x42, 0x7F, 0x21) // i64.const -1; local.set $acc
	return appendU32(out, acc)
}

// flush appends, at the function's single exit: $written |= $acc.
func (in *instrumenter) flush(out []byte, acc uint32) []byte {
	out = append(out, 0x23)
	out = appendU32(out, in.written)
	out = append(out, 0x20)
	out = appendU32(out, acc)
	out = append(out, 0x84, 0x24) // i64.or; global.set
	return appendU32(out, in.written)
}

// bulk reports whether 0xFC sub-opcode sub is an operation whose cost grows with an operand:
// memory.init, memory.copy, memory.fill, table.init, table.copy, table.grow, table.fill. Each
// takes its length as the i32 on top of the stack.
func bulk(sub uint32) bool {
	switch sub {
	case 8, 10, 11, 12, 14, 15, 17:
		return true
	}
	return false
}

// charge appends, before a bulk operation whose length n is on top of the stack (and stays
// there): $fuel -= n / BulkBytesPerFuel; if $fuel < 0 { call $yield }. Without it, a loop
// of memory.fill over all of memory would spend milliseconds per check, and a refill sized
// for cheap checks would let it run far past its deadline.
func (in *instrumenter) charge(out []byte, scratch uint32) []byte {
	out = append(out, 0x22) // local.tee $scratch
	out = appendU32(out, scratch)
	out = append(out, 0x23)
	out = appendU32(out, in.fuel)
	out = append(out, 0x20) // local.get $scratch
	out = appendU32(out, scratch)
	out = append(out, 0x41)
	out = appendS33(out, bulkShift)
	out = append(out, 0x76, 0x6B, 0x24) // i32.shr_u; i32.sub; global.set
	out = appendU32(out, in.fuel)
	out = append(out, 0x23)
	out = appendU32(out, in.fuel)
	out = append(out, 0x41, 0x00, 0x48, 0x04, 0x40, 0x10) // i32.const 0; i32.lt_s; if; call
	out = appendU32(out, in.yield)
	return append(out, 0x0B)
}

// BulkBytesPerFuel is how many bytes (or table elements) of a bulk operation cost one unit
// of fuel, as much as a loop iteration: filling or copying 256 bytes takes about as long as
// a few short loop iterations.
const (
	BulkBytesPerFuel = 1 << bulkShift
	bulkShift        = 8
)

// maxLocals bounds a function's locals (wazero's own limit is far above any real module).
const maxLocals = 1 << 20

// check appends: $fuel = $fuel - 1; if $fuel < 0 { call $yield }.
func (in *instrumenter) check(out []byte) []byte {
	out = append(out, 0x23)
	out = appendU32(out, in.fuel)
	out = append(out, 0x41, 0x01, 0x6B, 0x24) // i32.const 1; i32.sub; global.set
	out = appendU32(out, in.fuel)
	out = append(out, 0x23)
	out = appendU32(out, in.fuel)
	out = append(out, 0x41, 0x00, 0x48, 0x04, 0x40, 0x10) // i32.const 0; i32.lt_s; if; call
	out = appendU32(out, in.yield)
	return append(out, 0x0B)
}

// addDepth appends: global.set $depth (global.get $depth op weight), op being i32.add or
// i32.sub.
func (in *instrumenter) addDepth(out []byte, op byte, weight uint32) []byte {
	out = append(out, 0x23)
	out = appendU32(out, in.depth)
	out = append(out, 0x41)
	out = appendS33(out, int64(weight))
	out = append(out, op, 0x24)
	return appendU32(out, in.depth)
}

func appendS33(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// skipImmediates advances r past the immediates of opcode op.
func skipImmediates(r *reader, op byte) {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		r.blocktype()
	case op == 0x0C || op == 0x0D: // br, br_if
		r.u32()
	case op == 0x0E: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10 || op == 0x12: // call, return_call
		r.u32()
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1C: // select t*
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.valtype()
		}
	case op == 0x23 || op == 0x24: // global.get, global.set (constant expressions)
		r.u32()
	case op >= 0x20 && op <= 0x22, op == 0x25 || op == 0x26: // local.*, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3E: // loads and stores
		r.memarg()
	case op == 0x3F || op == 0x40: // memory.size, memory.grow
		r.byte()
	case op == 0x41: // i32.const
		r.s64()
	case op == 0x42: // i64.const
		r.s64()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xD0: // ref.null t
		r.byte()
	case op == 0xD2: // ref.func
		r.u32()
	case op == 0xFC:
		skipFC(r)
	case op == 0xFD:
		skipFD(r)
	case op <= 0x01, op == 0x05, op == 0x0B, op == 0x0F, op == 0x1A, op == 0x1B,
		op >= 0x45 && op <= 0xC4, op == 0xD1:
		// no immediates
	default:
		r.fail("unsupported instruction 0x%02x", op)
	}
}

func skipFC(r *reader) { skipFCImmediates(r, r.u32()) }

// skipFCImmediates advances r past the immediates of 0xFC sub-opcode sub.
func skipFCImmediates(r *reader, sub uint32) {
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init
		r.u32()
		r.byte()
	case sub == 9: // data.drop
		r.u32()
	case sub == 10: // memory.copy
		r.byte()
		r.byte()
	case sub == 11: // memory.fill
		r.byte()
	case sub == 12 || sub == 14: // table.init, table.copy
		r.u32()
		r.u32()
	case sub == 13 || sub >= 15 && sub <= 17: // elem.drop, table.grow/size/fill
		r.u32()
	default:
		r.fail("unsupported instruction 0xfc %d", sub)
	}
}

func skipFD(r *reader) { skipFDImmediates(r, r.u32()) }

// skipFDImmediates advances r past the immediates of 0xFD sub-opcode sub.
func skipFDImmediates(r *reader, sub uint32) {
	switch {
	case sub <= 11, sub == 92 || sub == 93: // v128 loads/stores
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.byte()
	case sub <= 275:
		// every other SIMD instruction has no immediates
	default:
		r.fail("unsupported instruction 0xfd %d", sub)
	}
}

// reader decodes the wasm binary encoding; the first error sticks and later reads return 0.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.off >= len(r.b) }

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = malformed("at byte %d: %s", r.off, fmt.Sprintf(format, args...))
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.fail("length %d runs past the end", n)
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) uleb(bits uint) uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift >= bits {
			r.fail("integer too long")
			return 0
		}
		v |= uint64(c&0x7F) << shift
		if c&0x80 == 0 {
			if bits < 64 && v>>bits != 0 {
				r.fail("integer out of range")
				return 0
			}
			return v
		}
	}
}

func (r *reader) u32() uint32 { return uint32(r.uleb(32)) }

// s64 skips a signed LEB128 of up to 64 bits (i32/i64 constants, block types).
func (r *reader) s64() {
	for i := 0; ; i++ {
		c := r.byte()
		if r.err != nil {
			return
		}
		if i >= 10 {
			r.fail("integer too long")
			return
		}
		if c&0x80 == 0 {
			return
		}
	}
}

func (r *reader) s33() { r.s64() }

// peek returns the next byte without reading it (0 at the end).
func (r *reader) peek() byte {
	if r.err != nil || r.off >= len(r.b) {
		return 0
	}
	return r.b[r.off]
}

// valtype reads a value type. Only the single-byte types are accepted: typed references
// (0x63, 0x64 and a heap type) and GC types are refused, because reading them as one byte
// would desynchronise the rewrite from the engine, and with it the fuel checks.
func (r *reader) valtype() byte {
	t := r.byte()
	switch t {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F: // i32 i64 f32 f64 v128 funcref externref
		return t
	}
	if r.err == nil {
		r.fail("value type 0x%02x is not supported (only numeric, v128, funcref and externref)", t)
	}
	return 0
}

// blocktype reads a block type: empty, a value type, or a type index.
func (r *reader) blocktype() {
	switch b := r.peek(); {
	case b == 0x40:
		r.byte()
	case b >= 0x40 && b < 0x80: // a negative one-byte s33: a value type
		r.valtype()
	default:
		r.s33()
	}
}

// memarg reads a memory argument and returns its offset.
func (r *reader) memarg() uint64 {
	align := r.u32()
	if align&(1<<6) != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	return r.uleb(64)
}

func (r *reader) name() string {
	n := r.u32()
	return string(r.bytes(int(n)))
}

// limits reads table or memory limits.
func (r *reader) limits() (flags byte, min, max uint64) {
	flags = r.byte()
	min = r.uleb(64)
	if flags&1 != 0 {
		max = r.uleb(64)
	}
	if flags > 7 {
		r.fail("unknown limits flags 0x%02x", flags)
	}
	return flags, min, max
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
