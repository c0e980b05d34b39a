package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmfleet/wasmfleet/agent/kv"
	"github.com/wasmfleet/wasmfleet/agent/sandbox/internal/rewrite"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// Event is one invocation: the MQTT topic and payload that triggered it (both empty for an
// interval trigger).
type Event struct {
	Topic   string
	Payload []byte
}

// Message is one publish made by a handler.
type Message struct {
	Topic   string
	Payload []byte
}

// Result is what a successful event produced.
type Result struct {
	Publishes []Message
	Duration  time.Duration
}

// Stats counts a module's events since it was loaded.
type Stats struct {
	Invocations uint64
	Failures    uint64
	ByKind      map[string]uint64 // failures by Kind
	LogsDropped uint64
	// Instances counts instantiations. Events beyond it ran in an instance restored to its
	// state right after initialisation.
	Instances uint64
}

// Module is a compiled module with its manifest, ready to handle events. It is safe for
// concurrent use; at most Limits.Concurrency events run at once.
type Module struct {
	r        *Runtime
	manifest *modules.Manifest
	limits   modules.Limits
	compiled wazero.CompiledModule
	base     wazero.ModuleConfig
	hasStart bool
	hasInit  bool
	bucket   *kv.Bucket
	output   string // wasi-command: expanded output topic
	// publishTo is the publish capability with {device} expanded (Manifest.MayPublish,
	// computed once).
	publishTo []string
	slots     chan struct{}
	// reuse: instances are restored from a snapshot instead of made per event (see
	// instance); globals are the exports of the module's mutable globals.
	reuse     bool
	globals   []string
	written   bool        // the instrumented module tracks its writes to memory (rewrite.Options.Written)
	snapshots atomic.Bool // snapshot new instances even of a large memory (see smallMemory)

	poolMu sync.Mutex
	idle   []*instance // at most limits.Concurrency
	closed bool

	invocations, failures, logsDropped, instances atomic.Uint64
	refill                                        atomic.Int32 // see event.yield
	mu                                            sync.Mutex
	byKind                                        map[string]uint64
}

func (r *Runtime) newModule(compiled wazero.CompiledModule, inst *rewrite.Result, m *modules.Manifest, limits modules.Limits) (*Module, error) {
	if err := r.checkSignatures(compiled); err != nil {
		return nil, err
	}
	exports := compiled.ExportedFunctions()
	needFunc := func(name string, params, results []api.ValueType) error {
		def, ok := exports[name]
		if !ok {
			return fmt.Errorf("%w: %s module does not export %s", ErrInvalidModule, m.ABI, name)
		}
		if !sameTypes(def.ParamTypes(), params) || !sameTypes(def.ResultTypes(), results) {
			return fmt.Errorf("%w: export %s has type %s", ErrInvalidModule, name, sig(def))
		}
		return nil
	}
	i32 := api.ValueTypeI32
	switch m.ABI {
	case modules.ABIHandlerV1:
		if _, ok := compiled.ExportedMemories()["memory"]; !ok {
			return nil, fmt.Errorf("%w: handler/v1 module does not export its memory as \"memory\"", ErrInvalidModule)
		}
		if err := needFunc("wasmfleet_alloc", []api.ValueType{i32}, []api.ValueType{i32}); err != nil {
			return nil, err
		}
		if err := needFunc("wasmfleet_handle", []api.ValueType{i32, i32}, []api.ValueType{i32}); err != nil {
			return nil, err
		}
	case modules.ABIWASICommand:
		if err := needFunc("_start", nil, nil); err != nil {
			return nil, err
		}
	}
	_, hasInit := exports["_initialize"]
	if hasInit && m.ABI == modules.ABIHandlerV1 {
		if err := needFunc("_initialize", nil, nil); err != nil {
			return nil, err
		}
	}
	mod := &Module{
		r: r, manifest: m, limits: limits, compiled: compiled,
		hasStart: inst.HasStart, hasInit: hasInit && m.ABI == modules.ABIHandlerV1,
		slots:  make(chan struct{}, limits.Concurrency),
		byKind: map[string]uint64{},
	}
	mod.refill.Store(rewrite.YieldEvery)
	mod.reuse = reusable(m, inst)
	mod.written = inst.Written
	for _, g := range inst.Globals {
		mod.globals = append(mod.globals, g.Export)
	}
	if m.Capabilities.KV != nil {
		if r.cfg.KV == nil {
			return nil, fmt.Errorf("%w: module asks for kv and this runtime has no kv store", ErrPolicy)
		}
		b, err := r.cfg.KV.Bucket(m.Name)
		if err != nil {
			return nil, err
		}
		mod.bucket = b
	}
	if m.Output != "" {
		mod.output = topic.Expand(m.Output, r.cfg.DeviceID)
	}
	for _, f := range m.Capabilities.Publish {
		mod.publishTo = append(mod.publishTo, topic.Expand(f, r.cfg.DeviceID))
	}

	// Per-module config, computed once. Nothing is granted unless listed: no args, no env
	// (but the documented ones for commands), no files, fake clocks, no real randomness
	// (each instance adds its clocks, randomness and writers).
	base := wazero.NewModuleConfig().WithName("").WithStartFunctions()
	if m.Capabilities.Clock {
		base = base.WithSysWalltime().WithSysNanotime()
	}
	if m.ABI == modules.ABIWASICommand {
		base = base.WithArgs(m.Name).
			WithEnv("WASMFLEET_DEVICE_ID", r.cfg.DeviceID)
		for k, v := range m.Config {
			base = base.WithEnv("WASMFLEET_CONFIG_"+k, v)
		}
	}
	mod.base = base
	return mod, nil
}

// mayPublish reports whether the module may publish to name: Manifest.MayPublish for this
// device.
func (m *Module) mayPublish(name string) bool {
	for _, f := range m.publishTo {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// Manifest returns the module's manifest.
func (m *Module) Manifest() *modules.Manifest { return m.manifest }

// Limits returns the limits in force (the manifest's, with defaults).
func (m *Module) Limits() modules.Limits { return m.limits }

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	m.mu.Lock()
	by := make(map[string]uint64, len(m.byKind))
	for k, v := range m.byKind {
		by[k] = v
	}
	m.mu.Unlock()
	return Stats{Invocations: m.invocations.Load(), Failures: m.failures.Load(), ByKind: by,
		LogsDropped: m.logsDropped.Load(), Instances: m.instances.Load()}
}

// reusable reports whether a module's instances may be restored from a snapshot between
// events rather than made anew for each (see instance): if mayRestore, and the module has
// no mutable v128 global (wazero's API reads and writes only the low 64 bits of a global).
func reusable(m *modules.Manifest, inst *rewrite.Result) bool {
	if !mayRestore(m) {
		return false
	}
	for _, g := range inst.Globals {
		if g.Type == 0x7B {
			return false
		}
	}
	return true
}

// mayRestore reports whether a module of manifest m may have its instances restored, as far
// as the manifest tells. Not commands (a command's _start runs once and exits, which closes
// its instance), and not modules granted randomness (state that initialisation seeded from
// real randomness, a PRNG's say, would repeat in every event).
func mayRestore(m *modules.Manifest) bool {
	return m.ABI == modules.ABIHandlerV1 && !m.Capabilities.Random
}

// Close releases the compiled module and its idle instances. It does not wait for running
// events: the caller stops sending events and waits for those in flight first (the agent's
// dispatcher does).
func (m *Module) Close(ctx context.Context) error {
	m.poolMu.Lock()
	idle := m.idle
	m.idle, m.closed = nil, true
	m.poolMu.Unlock()
	for _, in := range idle {
		in.close()
	}
	return m.compiled.Close(ctx)
}

type eventKey struct{}

// event is the state of one running event, reached by host functions through the context.
// Everything here runs on the goroutine that called Handle: the guest, the host functions it
// calls and yield. No other goroutine touches a running guest, which is what keeps the
// interpreter's globals and memory free of data races.
type event struct {
	m           *Module
	ev          Event
	inst        *instance
	tx          *kv.Tx
	out         []Message
	outSize     int
	stdout      outputBuffer
	logs        int
	ctx         context.Context // the event's, as the guest's calls get it
	deadline    time.Time       // by the wall clock, whatever Config.Now says
	ctxDeadline time.Time       // the caller's, if it has one
	fuel        api.MutableGlobal
	refill      int32 // fuel given at each yield, adapted to the guest's speed
	lastYield   time.Time
	depth       api.Global

	violation error // the first reason the event must end
	timedOut  bool
}

// fail records the first violation; the guest stops at its next yield, or at once when a
// host function calls stop.
func (e *event) fail(err error) {
	if e.violation == nil {
		e.violation = err
	}
	if e.fuel != nil {
		e.fuel.Set(0)
	}
}

// yield is called by the guest whenever its fuel runs out: at least every
// rewrite.YieldEvery function entries and loop iterations, and by host functions whose work
// used up the fuel (spend). It ends the call if the event failed, its deadline passed or the
// caller's context ended, and otherwise refills the fuel. Checking the clock here rather than
// in a timer goroutine means nothing but this goroutine ever touches the guest, and a late
// timer cannot let a guest overrun.
func (e *event) yield() {
	now := time.Now()
	switch {
	case e.violation != nil:
	case e.expiredAt(now):
	case e.ctx.Err() != nil:
		e.violation = fmt.Errorf("%w: %v", ErrCancelled, context.Cause(e.ctx))
	case !e.ctxDeadline.IsZero() && !now.Before(e.ctxDeadline):
		// The context's own timer may not have run yet when the guest holds the only P.
		e.violation = fmt.Errorf("%w: %v", ErrCancelled, context.DeadlineExceeded)
	default:
		// Size the next refill so that the guest comes back every 100 µs to 1 ms: often
		// enough for the deadline to hold within a millisecond or two on any engine and
		// machine (the interpreter on a Pi Zero is a hundred times slower than compiled code
		// here), rarely enough that yielding costs next to nothing.
		switch dt := now.Sub(e.lastYield); {
		case dt > maxYieldInterval && e.refill > 1:
			e.refill /= 2
		case dt < minYieldInterval && e.refill < maxRefill:
			e.refill *= 2
		}
		e.lastYield = now
		e.fuel.Set(uint64(e.refill))
		return
	}
	panic(violation{e.violation})
}

// spend charges the work of a host function to the guest's fuel, and yields when that uses
// it up. Host functions spend hostCallFuel on entry and a unit per BulkBytesPerFuel bytes they
// read or write, so that a guest looping over host calls meets its deadline as one looping
// over its own code does, without a clock read in every call (on the benchmark machine, a
// VM, one costs 120 ns).
func (e *event) spend(units int32) {
	f := int32(uint32(e.fuel.Get())) - units
	if f < 0 {
		e.yield()
		return
	}
	e.fuel.Set(uint64(uint32(f)))
}

// hostCallFuel is what a host call costs in fuel: a few hundred nanoseconds, as long as a
// few dozen iterations of a short loop.
const hostCallFuel = 64

// expiredAt reports whether the deadline has passed at now, and if so records the timeout.
func (e *event) expiredAt(now time.Time) bool {
	if now.Before(e.deadline) {
		return false
	}
	e.timedOut = true
	if e.violation == nil {
		e.violation = fmt.Errorf("%w: still running after %s", ErrTimeout, e.m.limits.Timeout)
	}
	return true
}

// checkDeadline ends the event if its deadline has passed. Host work too long to be charged
// as fuel (a 64 KiB random_fill, each 64 KiB chunk of WASI's random_get) checks it itself.
func (e *event) checkDeadline() {
	if e.expiredAt(time.Now()) {
		panic(violation{e.violation})
	}
}

// Bounds of the adaptive fuel refill (see yield).
const (
	minYieldInterval = 100 * time.Microsecond
	maxYieldInterval = time.Millisecond
	maxRefill        = 1 << 16
)

// Handle runs one event in a pristine instance (see instance) and returns its publishes, or
// an error wrapping one of the Err* kinds. Handle waits (bounded by ctx) for a free slot
// when Limits.Concurrency events are already running.
func (m *Module) Handle(ctx context.Context, ev Event) (*Result, error) {
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a free slot: %w", ctx.Err())
	}
	defer func() { <-m.slots }()

	now := time.Now()
	start := now
	if !m.r.realClock {
		start = m.r.cfg.Now()
	}
	st := &event{m: m, ev: ev, deadline: now.Add(time.Duration(m.limits.Timeout)), lastYield: now}
	if m.bucket != nil {
		st.tx = m.bucket.Begin(int(m.manifest.Capabilities.KV.MaxBytes))
	}
	err := m.run(ctx, st)
	m.invocations.Add(1)
	if err == nil && st.tx != nil {
		if cerr := st.tx.Commit(); cerr != nil {
			err = fmt.Errorf("%w: commit kv: %v", ErrTrap, cerr)
		}
	}
	if err != nil {
		m.failures.Add(1)
		m.mu.Lock()
		m.byKind[Kind(err)]++
		m.mu.Unlock()
		return nil, err
	}
	return &Result{Publishes: st.out, Duration: m.r.cfg.Now().Sub(start)}, nil
}

func (m *Module) run(ctx context.Context, st *event) (err error) {
	st.ctxDeadline, _ = ctx.Deadline()
	ictx := context.WithValue(ctx, eventKey{}, st)
	st.ctx = ictx

	inst := m.takeIdle()
	if inst != nil {
		inst.restore(st)
		st.arm(inst)
	} else {
		m.instances.Add(1)
		if inst, err = m.instantiate(ictx, st); err != nil {
			return err
		}
	}
	defer func() { m.release(inst, err) }()
	// Keep the refill the module's last event settled on.
	defer func() { m.refill.Store(st.refill) }()

	switch m.manifest.ABI {
	case modules.ABIWASICommand:
		if _, err := st.call(ictx, "_start"); err != nil {
			return err
		}
		if len(st.stdout.buf) > 0 && m.output != "" {
			st.publish(m.output, st.stdout.buf)
		}
	default:
		n := uint32(len(st.ev.Payload))
		res, err := st.call(ictx, "wasmfleet_alloc", uint64(n))
		if err != nil {
			return err
		}
		ptr := uint32(res[0])
		inst.wrote(uint64(ptr), uint64(n))
		if n > 0 && (ptr == 0 || !inst.mod.Memory().Write(ptr, st.ev.Payload)) {
			return fmt.Errorf("%w: wasmfleet_alloc(%d) returned %#x, which is not a usable buffer", ErrHandler, n, ptr)
		}
		res, err = st.call(ictx, "wasmfleet_handle", uint64(ptr), uint64(n))
		if err != nil {
			return err
		}
		if code := int32(res[0]); code != 0 {
			return st.classify(fmt.Errorf("%w: wasmfleet_handle returned %d", ErrHandler, code))
		}
	}
	return st.violation
}

// arm readies an instance's globals and the event's writers for the event: the fuel starts
// from the refill the module's last event settled on.
func (e *event) arm(in *instance) {
	e.fuel = in.fuel
	e.depth = in.depth
	e.stdout.ev = e
	if e.m.manifest.ABI == modules.ABIWASICommand {
		e.stdout.limit = int(e.m.limits.MaxOutput)
	} else {
		e.stdout.toLog = true
	}
	e.refill = e.m.refill.Load()
	e.fuel.Set(uint64(e.refill))
}

// call calls the instance's export name, turning an error into one of the sandbox kinds. Its
// results are valid until the instance's next call.
func (e *event) call(ctx context.Context, name string, args ...uint64) ([]uint64, error) {
	fn := e.inst.function(name)
	if fn == nil {
		return nil, fmt.Errorf("%w: the module does not export %s", ErrInvalidModule, name)
	}
	// The exports called here take at most two parameters and return at most one result
	// (newModule checks their types), which fit the instance's stack.
	stack := e.inst.stack[:]
	copy(stack, args)
	if err := fn.CallWithStack(ctx, stack); err != nil {
		err = e.classify(fmt.Errorf("%s: %w", name, err))
		if err == nil && name != "_start" {
			// proc_exit(0) is how a command ends well; anything else must return.
			err = fmt.Errorf("%w: %s called proc_exit(0) instead of returning", ErrHandler, name)
		}
		return nil, err
	}
	return stack[:1], nil
}

// classify turns the error of a failed call into one of the sandbox kinds, by what the
// event saw rather than by the error's text where it can.
func (e *event) classify(err error) error {
	var exit *sys.ExitError
	switch {
	case e.violation != nil && !e.timedOut:
		return e.violation
	case errors.As(err, &exit):
		if exit.ExitCode() == 0 {
			return nil
		}
		return fmt.Errorf("%w: exit code %d", ErrHandler, exit.ExitCode())
	case e.inst != nil && e.inst.mem.hit:
		// Root cause first: a guest refused memory that then traps or spins is out of memory.
		return fmt.Errorf("%w: needed more than %s of memory (%v)", ErrMemoryLimit, e.m.limits.Memory, firstLine(err))
	case e.timedOut:
		return e.violation
	case e.depth != nil && e.depth.Get() > rewrite.StackBudget, strings.Contains(err.Error(), "stack overflow"):
		return fmt.Errorf("%w: %v", ErrStackOverflow, firstLine(err))
	case errors.Is(err, ErrHandler):
		return err
	}
	return fmt.Errorf("%w: %v", ErrTrap, firstLine(err))
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// fakeRand is the deterministic randomness a module sees without the random capability (Go's
// runtime and wasi-libc read some at start). It is splitmix64 from a fixed seed, so every
// event sees the same stream, as a pristine instance should.
type fakeRand struct{ x uint64 }

func (r *fakeRand) Read(p []byte) (int, error) {
	for i := range p {
		if i%8 == 0 {
			r.x += 0x9E3779B97F4A7C15
		}
		z := r.x
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		p[i] = byte((z ^ (z >> 31)) >> (8 * (i % 8)))
	}
	return len(p), nil
}

// outputBuffer collects a command's stdout up to limit bytes, or forwards a handler's stdout
// to its log.
type outputBuffer struct {
	ev    *event
	toLog bool
	limit int
	buf   []byte
}

func (o *outputBuffer) Write(p []byte) (int, error) {
	if o.toLog {
		return logWriter{o.ev}.Write(p)
	}
	if len(o.buf)+len(p) > o.limit {
		o.ev.fail(fmt.Errorf("%w: wrote more than %s to stdout", ErrOutputLimit, modules.Size(o.limit)))
		return 0, errors.New("output limit reached")
	}
	o.buf = append(o.buf, p...)
	return len(p), nil
}

// logWriter sends stderr (and a handler's stdout) to the module's log.
type logWriter struct{ ev *event }

func (w logWriter) Write(p []byte) (int, error) {
	w.ev.log(1, p)
	return len(p), nil
}
