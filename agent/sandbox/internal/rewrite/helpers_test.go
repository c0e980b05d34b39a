package rewrite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Helpers shared by rewrite_test.go and fuzz_test.go: wabt, wazero instances
// with the yield host function, and small decoders of the binary format used to look at
// what Instrument produced.

// wabt returns the path of a wabt tool; the tests need wabt and never skip without it.
func wabt(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s (wabt) not found: run make deps", name)
	}
	return p
}

var watCache sync.Map // flags + "\x00" + source -> []byte

// wat compiles a module in the text format with wat2wasm.
func wat(t testing.TB, src string, flags ...string) []byte {
	t.Helper()
	key := strings.Join(flags, " ") + "\x00" + src
	if b, ok := watCache.Load(key); ok {
		return b.([]byte)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), flags...), in, "-o", out)
	if msg, err := exec.Command(wabt(t, "wat2wasm"), args...).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s: %v\n%s\n%s", strings.Join(flags, " "), err, msg, src)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	watCache.Store(key, b)
	return b
}

// wasmValidate fails the test unless wabt's wasm-validate accepts wasm.
func wasmValidate(t testing.TB, wasm []byte, flags ...string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(f, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), flags...), f)
	if msg, err := exec.Command(wabt(t, "wasm-validate"), args...).CombinedOutput(); err != nil {
		t.Fatalf("wasm-validate rejects the instrumented module: %v\n%s", err, msg)
	}
}

// errPanic marks an error made from a panic in Instrument.
var errPanic = errors.New("Instrument panicked")

// instrument calls Instrument, turning a panic into an error wrapping errPanic.
func instrument(wasm []byte) (res *Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("%w: %v\n%s", errPanic, p, debug.Stack())
		}
	}()
	return Instrument(wasm)
}

func mustInstrument(t testing.TB, wasm []byte) *Result {
	t.Helper()
	res, err := instrument(wasm)
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	if res == nil || len(res.Wasm) < 8 {
		t.Fatalf("Instrument returned no module")
	}
	return res
}

// engines are wazero's two engines; every behavioural test runs on both.
var engines = []struct {
	name   string
	config func() wazero.RuntimeConfig
}{
	{"compiler", wazero.NewRuntimeConfigCompiler},
	{"interpreter", wazero.NewRuntimeConfigInterpreter},
}

// instance is a module instantiated in its own runtime, with the host modules the test
// modules import: env (log, twice, tick), genv (a global "base" = 100) and the yield
// function the rewrite imports.
type instance struct {
	t       testing.TB
	ctx     context.Context
	engine  string // set by the test, if it needs it
	mod     api.Module
	yields  int   // calls of __wasmfleet.yield
	refill  int32 // the fuel each yield sets
	onYield func(n int)
	logged  []int32 // arguments of env.log
	ticks   int     // calls of env.tick
}

var genvWat = `(module (global (export "base") i32 (i32.const 100)))`

func load(t testing.TB, cfg wazero.RuntimeConfig, wasm []byte) *instance {
	t.Helper()
	in, err := tryLoad(t, cfg, wasm)
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	return in
}

// callTimeout bounds the calls of one instance, so that a rewrite that stops adding fuel
// checks fails the tests that loop forever instead of hanging them.
const callTimeout = 30 * time.Second

// newRuntime makes a runtime whose calls end when ctx does, with ctx.
func newRuntime(t testing.TB, cfg wazero.RuntimeConfig) (context.Context, wazero.Runtime) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg.WithCloseOnContextDone(true))
	t.Cleanup(func() {
		rt.Close(context.Background())
		cancel()
	})
	return ctx, rt
}

func tryLoad(t testing.TB, cfg wazero.RuntimeConfig, wasm []byte) (*instance, error) {
	t.Helper()
	ctx, rt := newRuntime(t, cfg)
	in := &instance{t: t, ctx: ctx, refill: YieldEvery}
	_, err := rt.NewHostModuleBuilder("env").
		NewFunctionBuilder().WithFunc(func(v int32) { in.logged = append(in.logged, v) }).Export("log").
		NewFunctionBuilder().WithFunc(func(v int32) int32 { return 2 * v }).Export("twice").
		NewFunctionBuilder().WithFunc(func() { in.ticks++ }).Export("tick").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.NewHostModuleBuilder(YieldModule).NewFunctionBuilder().
		WithFunc(func(_ context.Context, m api.Module) {
			in.yields++
			if in.onYield != nil {
				in.onYield(in.yields)
			}
			m.ExportedGlobal(FuelExport).(api.MutableGlobal).Set(api.EncodeI32(in.refill))
		}).Export(YieldName).Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.InstantiateWithConfig(ctx, wat(t, genvWat), wazero.NewModuleConfig().WithName("genv")); err != nil {
		t.Fatal(err)
	}
	in.mod, err = rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("guest"))
	return in, err
}

func (in *instance) call(name string, args ...uint64) ([]uint64, error) {
	in.t.Helper()
	f := in.mod.ExportedFunction(name)
	if f == nil {
		in.t.Fatalf("the module exports no function %q", name)
	}
	return f.Call(in.ctx, args...)
}

func (in *instance) mustCall(name string, args ...uint64) []uint64 {
	in.t.Helper()
	res, err := in.call(name, args...)
	if err != nil {
		in.t.Fatalf("%s%v: %v", name, args, err)
	}
	return res
}

func (in *instance) global(name string) api.Global {
	in.t.Helper()
	g := in.mod.ExportedGlobal(name)
	if g == nil {
		in.t.Fatalf("the module exports no global %q", name)
	}
	return g
}

func (in *instance) fuel() int32 { return int32(in.global(FuelExport).Get()) }

func (in *instance) depth() uint32 { return uint32(in.global(DepthExport).Get()) }

func (in *instance) setGlobal(name string, v int32) {
	in.t.Helper()
	g, ok := in.global(name).(api.MutableGlobal)
	if !ok {
		in.t.Fatalf("global %q is not mutable", name)
	}
	g.Set(api.EncodeI32(v))
}

// Decoders of the binary format, independent of the rewrite's own where it matters.

func sectionsOf(t testing.TB, wasm []byte) []section {
	t.Helper()
	r := &reader{b: wasm, off: 8}
	var out []section
	for !r.done() {
		id := r.byte()
		body := r.bytes(int(r.u32()))
		out = append(out, section{id, body})
	}
	if r.err != nil {
		t.Fatalf("reading sections: %v", r.err)
	}
	return out
}

// sectionIDs lists the ids of the sections, custom sections as 0.
func sectionIDs(t testing.TB, wasm []byte) []byte {
	t.Helper()
	var ids []byte
	for _, s := range sectionsOf(t, wasm) {
		ids = append(ids, s.id)
	}
	return ids
}

func sectionBody(t testing.TB, wasm []byte, id byte) []byte {
	t.Helper()
	for _, s := range sectionsOf(t, wasm) {
		if s.id == id {
			return s.body
		}
	}
	return nil
}

// typesOf returns the function types as "params->results", value types in hex.
func typesOf(t testing.TB, wasm []byte) []string {
	t.Helper()
	body := sectionBody(t, wasm, secType)
	if body == nil {
		return nil
	}
	r := &reader{b: body}
	n := r.u32()
	var out []string
	for i := uint32(0); i < n && r.err == nil; i++ {
		if r.byte() != 0x60 {
			t.Fatalf("type %d is not a function type", i)
		}
		p := r.bytes(int(r.u32()))
		res := r.bytes(int(r.u32()))
		out = append(out, fmt.Sprintf("%x->%x", p, res))
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return out
}

type importEntry struct {
	Import
	typeIdx uint32 // for functions
}

func importsOf(t testing.TB, wasm []byte) []importEntry {
	t.Helper()
	body := sectionBody(t, wasm, secImport)
	if body == nil {
		return nil
	}
	r := &reader{b: body}
	n := r.u32()
	var out []importEntry
	for i := uint32(0); i < n && r.err == nil; i++ {
		e := importEntry{Import: Import{Module: r.name(), Name: r.name(), Kind: r.byte()}}
		switch e.Kind {
		case 0:
			e.typeIdx = r.u32()
		case 1:
			r.byte()
			r.limits()
		case 2:
			r.limits()
		case 3:
			r.bytes(2)
		}
		out = append(out, e)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return out
}

type exportEntry struct {
	kind byte
	idx  uint32
}

func exportsOf(t testing.TB, wasm []byte) map[string]exportEntry {
	t.Helper()
	out := map[string]exportEntry{}
	body := sectionBody(t, wasm, secExport)
	if body == nil {
		return out
	}
	r := &reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := r.name()
		out[name] = exportEntry{r.byte(), r.u32()}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return out
}

// names is the content of a "name" section: function names and local names.
type names struct {
	funcs  map[uint32]string
	locals map[uint32]map[uint32]string
}

func nameSectionOf(t testing.TB, wasm []byte) *names {
	t.Helper()
	for _, s := range sectionsOf(t, wasm) {
		if s.id != secCustom {
			continue
		}
		r := &reader{b: s.body}
		if r.name() != "name" {
			continue
		}
		n := &names{funcs: map[uint32]string{}, locals: map[uint32]map[uint32]string{}}
		for !r.done() {
			id := r.byte()
			sr := &reader{b: r.bytes(int(r.u32()))}
			switch id {
			case 1:
				for i, c := uint32(0), sr.u32(); i < c && sr.err == nil; i++ {
					idx := sr.u32()
					n.funcs[idx] = sr.name()
				}
			case 2:
				for i, c := uint32(0), sr.u32(); i < c && sr.err == nil; i++ {
					f := sr.u32()
					m := map[uint32]string{}
					for j, d := uint32(0), sr.u32(); j < d && sr.err == nil; j++ {
						l := sr.u32()
						m[l] = sr.name()
					}
					n.locals[f] = m
				}
			}
			if sr.err != nil {
				t.Fatalf("name subsection %d: %v", id, sr.err)
			}
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		return n
	}
	return nil
}

// elemFlags returns the flags of each element segment. It knows the constant expressions
// wat2wasm writes in element segments: i32.const, global.get, ref.func, ref.null.
func elemFlags(t testing.TB, wasm []byte) []uint32 {
	t.Helper()
	body := sectionBody(t, wasm, secElement)
	if body == nil {
		return nil
	}
	r := &reader{b: body}
	expr := func() {
		for r.err == nil {
			switch op := r.byte(); op {
			case 0x0B:
				return
			case 0x41:
				r.s64()
			case 0x23, 0xD2:
				r.u32()
			case 0xD0:
				r.byte()
			default:
				t.Fatalf("unexpected opcode 0x%02x in an element segment", op)
			}
		}
	}
	var out []uint32
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		out = append(out, flags)
		if flags == 2 || flags == 6 {
			r.u32()
		}
		if flags&1 == 0 {
			expr()
		}
		if flags&3 != 0 {
			r.byte()
		}
		for j, c := uint32(0), r.u32(); j < c && r.err == nil; j++ {
			if flags&4 == 0 {
				r.u32()
			} else {
				expr()
			}
		}
	}
	if r.err != nil || !r.done() {
		t.Fatalf("element section: %v", r.err)
	}
	return out
}

// Hand-assembled modules, for what wat2wasm cannot write.

var header = []byte("\x00asm\x01\x00\x00\x00")

func sec(id byte, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	return append(append([]byte{id}, appendU32(nil, uint32(len(b)))...), b...)
}

// vec is a vector: its length, then its items.
func vec(items ...[]byte) []byte {
	out := appendU32(nil, uint32(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

// fnBody is a code section entry: its size, then locals and code.
func fnBody(b ...byte) []byte { return append(appendU32(nil, uint32(len(b))), b...) }

func module(sections ...[]byte) []byte {
	m := append([]byte(nil), header...)
	for _, s := range sections {
		m = append(m, s...)
	}
	return m
}

// compileWith compiles wasm in a fresh runtime and reports wazero's verdict.
func compileWith(cfg wazero.RuntimeConfig, wasm []byte) error {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	defer rt.Close(ctx)
	_, err := rt.CompileModule(ctx, wasm)
	return err
}
