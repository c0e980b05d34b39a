package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmfleet/wasmfleet/agent/sandbox/internal/rewrite"
	"github.com/wasmfleet/wasmfleet/modules"
)

// instance is one instantiated module. A module that can be restored (see Module.reuse)
// keeps its instances between events: right after initialisation (start function and
// _initialize) the instance's memory, globals, random stream and fake clocks are saved in
// a snapshot, and before every later event they are put back, which costs a copy of
// memory instead of an instantiation. State that cannot be put back (tables, dropped
// segments, WASI's descriptors, a grown memory) is never restored: the rewrite sets a dirty
// global before anything changes it, and such an instance is closed after its event, as is
// one whose event was stopped (a trap, a timeout, a violation). See docs/sandbox.md,
// "Pristine instances".
type instance struct {
	mod     api.Module
	mem     limitedMemory
	fuel    api.MutableGlobal
	depth   api.Global
	dirty   api.MutableGlobal
	written api.MutableGlobal   // chunks of memory written since the snapshot; nil if untracked
	globals []api.MutableGlobal // the module's mutable globals and the rewrite's depth
	ev      *event              // the event using the instance, for its writers and randomness
	rng     fakeRand            // without the random capability
	clock   fakeClock           // without the clock capability
	snap    *snapshot           // nil until taken, and for instances that are not reused
	size    int                 // memory size after initialisation
	funcs   map[string]api.Function
	stack   [2]uint64 // parameters and results of event.call
	topic   string    // the last topic published to, which passed the module's checks
}

// function returns the exported function name, nil if there is none. The compiler gives
// each api.Function its own stack, which is worth keeping between events.
func (in *instance) function(name string) api.Function {
	fn, ok := in.funcs[name]
	if !ok {
		fn = in.mod.ExportedFunction(name)
		if in.funcs == nil {
			in.funcs = map[string]api.Function{}
		}
		in.funcs[name] = fn
	}
	return fn
}

// snapshot is an instance's state right after initialisation. Memory is kept in chunks of
// snapChunk bytes; a chunk of zeros is zeroChunk, shared and never written.
type snapshot struct {
	chunks  [][]byte
	globals []uint64
	rng     fakeRand
	clock   fakeClock
}

// snapChunk is the granularity of memory snapshots: a page of the host's.
const snapChunk = 4096

var zeroChunk [snapChunk]byte

// statelessWASI are the WASI functions after which restoring memory and globals is enough:
// they change nothing else in the instance (clocks and randomness are the sandbox's own,
// restored with the snapshot; writes go to the event's writers). Calling any other WASI
// function (fd_close, fd_renumber, fd_fdstat_set_flags, proc_exit, ...) marks the instance
// dirty, and it is not reused.
var statelessWASI = map[string]bool{
	"args_get": true, "args_sizes_get": true, "environ_get": true, "environ_sizes_get": true,
	"clock_res_get": true, "clock_time_get": true, "random_get": true,
	"fd_fdstat_get": true, "fd_filestat_get": true, "fd_prestat_get": true, "fd_prestat_dir_name": true,
	"fd_write": true, "poll_oneoff": true, "sched_yield": true,
}

// statefulImport is the rewrite's Options.Stateful.
func statefulImport(module, name string) bool {
	return module == wasi_snapshot_preview1.ModuleName && !statelessWASI[name]
}

// trackedImport is the rewrite's Options.Tracked: the host functions record what they write
// to memory themselves (event.writable). WASI's functions do not, so a call of one marks all
// of memory written.
func trackedImport(module, _ string) bool { return module == HostModule }

// instantiate makes a new instance for event st and runs its initialisation (the start
// function, then _initialize) under st's deadline. On error the instance is closed.
func (m *Module) instantiate(ctx context.Context, st *event) (*instance, error) {
	in := &instance{mem: limitedMemory{limit: uint64(m.limits.Memory)}, ev: st}
	st.inst = in
	cfg := m.base.WithRandSource(randSource{in}).WithStdout(stdoutOf{in}).WithStderr(stderrOf{in})
	if !m.manifest.Capabilities.Clock {
		cfg = cfg.WithWalltime(in.clock.walltime, 1).WithNanotime(in.clock.nanotime, 1)
	}
	if m.manifest.ABI == modules.ABIWASICommand {
		cfg = cfg.WithStdin(strings.NewReader(string(st.ev.Payload))).WithEnv("WASMFLEET_TOPIC", st.ev.Topic)
	}
	mod, err := m.r.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, &in.mem), m.compiled, cfg)
	if err != nil {
		return nil, st.classify(fmt.Errorf("instantiate: %w", err))
	}
	in.mod = mod
	fail := func(err error) (*instance, error) {
		in.close()
		return nil, err
	}
	var ok bool
	if in.fuel, ok = mod.ExportedGlobal(rewrite.FuelExport).(api.MutableGlobal); !ok {
		return fail(fmt.Errorf("%w: the instrumented module has no fuel global", ErrInvalidModule))
	}
	if in.dirty, ok = mod.ExportedGlobal(rewrite.DirtyExport).(api.MutableGlobal); !ok {
		return fail(fmt.Errorf("%w: the instrumented module has no dirty global", ErrInvalidModule))
	}
	in.depth = mod.ExportedGlobal(rewrite.DepthExport)
	if m.written {
		if in.written, ok = mod.ExportedGlobal(rewrite.WrittenExport).(api.MutableGlobal); !ok {
			return fail(fmt.Errorf("%w: the instrumented module has no written global", ErrInvalidModule))
		}
	}
	st.arm(in)
	if m.hasStart {
		if _, err := st.call(ctx, rewrite.StartExport); err != nil {
			return fail(err)
		}
	}
	if m.hasInit {
		if _, err := st.call(ctx, "_initialize"); err != nil {
			return fail(err)
		}
	}
	// Whatever initialisation did to tables or segments is part of the pristine state, so
	// the dirty global starts clear.
	in.dirty.Set(0)
	in.size = len(in.mem.buf)
	if m.reuse && (m.snapshots.Load() || in.size <= smallMemory) {
		if err := in.takeSnapshot(m.globals); err != nil {
			return fail(err)
		}
	}
	return in, nil
}

// smallMemory is the memory size up to which a module's instances are always snapshotted.
// Above it, an instance is snapshotted only when the module's last event ended in a state
// that a restore can undo (Module.snapshots): a module that fails or grows its memory on
// every event then costs no more than instantiation, where a snapshot of a large memory
// (the first touch of fresh pages) could cost milliseconds.
const smallMemory = 1 << 20

// takeSnapshot saves the state to restore before each later event.
func (in *instance) takeSnapshot(names []string) error {
	depth, ok := in.depth.(api.MutableGlobal)
	if !ok {
		return fmt.Errorf("%w: the instrumented module has no depth global", ErrInvalidModule)
	}
	in.globals = append(in.globals, depth)
	for _, name := range names {
		g, ok := in.mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			return fmt.Errorf("%w: the instrumented module does not export its global %s", ErrInvalidModule, name)
		}
		in.globals = append(in.globals, g)
	}
	s := &snapshot{chunks: make([][]byte, len(in.mem.buf)/snapChunk), globals: make([]uint64, len(in.globals)), rng: in.rng, clock: in.clock}
	n := 0
	for i := range s.chunks {
		if !bytes.Equal(in.chunk(i), zeroChunk[:]) {
			n++
		}
	}
	data := make([]byte, 0, n*snapChunk)
	for i := range s.chunks {
		s.chunks[i] = zeroChunk[:]
		if c := in.chunk(i); !bytes.Equal(c, zeroChunk[:]) {
			data = append(data, c...)
			s.chunks[i] = data[len(data)-snapChunk:]
		}
	}
	for i, g := range in.globals {
		s.globals[i] = g.Get()
	}
	in.snap = s
	if in.written != nil {
		in.written.Set(0)
	}
	return nil
}

// restorable reports whether a restore could undo what the last event did: the instance is
// open, its memory has the size it had after initialisation, and nothing that a restore
// cannot undo happened.
func (in *instance) restorable() bool {
	return !in.mod.IsClosed() && in.dirty.Get() == 0 && len(in.mem.buf) == in.size
}

// restore puts the snapshot back for event st. When the module tracks its writes (a memory
// of at most rewrite.WrittenChunks chunks, on the compiler), only the chunks the last event
// may have written are put back, each copied whole. Otherwise every chunk is compared and
// copied back if it differs (restoreAll).
func (in *instance) restore(st *event) {
	if w := in.writtenChunks(); w != ^uint64(0) {
		for w &= 1<<len(in.snap.chunks) - 1; w != 0; w &= w - 1 {
			i := bits.TrailingZeros64(w)
			copy(in.chunk(i), in.snap.chunks[i])
		}
		if verifyRestore {
			if n := in.restoreAll(); n > 0 {
				panic(fmt.Sprintf("sandbox: %d chunks of memory differed from the snapshot after a restore of the chunks written", n))
			}
		}
	} else {
		in.restoreAll()
	}
	for i, g := range in.globals {
		g.Set(in.snap.globals[i])
	}
	in.rng, in.clock = in.snap.rng, in.snap.clock
	in.mem.hit = false
	in.ev = st
	st.inst = in
}

// writtenChunks returns the chunks of memory that may differ from the snapshot, bit i for
// chunk i, and clears the record; all bits when the instance does not track its writes or
// its memory is too large for the record.
func (in *instance) writtenChunks() uint64 {
	if in.written == nil || len(in.snap.chunks) > rewrite.WrittenChunks {
		return ^uint64(0)
	}
	w := in.written.Get()
	in.written.Set(0)
	if w == ^uint64(0) {
		return w
	}
	return w | w<<1 // a store may straddle into the next chunk
}

// wrote records that the host wrote guest memory [ptr, ptr+n), already checked to be inside
// memory.
func (in *instance) wrote(ptr, n uint64) {
	if in.written == nil || n == 0 {
		return
	}
	first, last := ptr/rewrite.WrittenChunk, (ptr+n-1)/rewrite.WrittenChunk
	w := ^uint64(0) // past the record's chunks, which only a larger memory has
	if last < rewrite.WrittenChunks {
		w = (uint64(1)<<(last+1) - 1) &^ (uint64(1)<<first - 1)
	}
	in.written.Set(in.written.Get() | w)
}

// restoreAll compares every chunk of memory with the snapshot and copies back those that
// differ, and returns how many did. An event changes few of an instance's pages (2 of the 16
// of the C example, 52 of the 832 of the Go one), and reading a page costs less than
// writing it.
func (in *instance) restoreAll() int {
	n := 0
	for i, c := range in.snap.chunks {
		if live := in.chunk(i); !bytes.Equal(live, c) {
			copy(live, c)
			n++
		}
	}
	return n
}

// chunk returns chunk i of the instance's memory.
func (in *instance) chunk(i int) []byte { return in.mem.buf[i*snapChunk : (i+1)*snapChunk] }

// verifyRestore makes every restore that trusted the written record check all of memory
// against the snapshot afterwards, and panic if anything differed. Tests set it: a store the
// rewrite failed to record would leak state between events.
var verifyRestore = false

func (in *instance) close() {
	if in.mod != nil {
		in.mod.Close(context.Background())
	}
}

// takeIdle returns an idle instance of the module, or nil.
func (m *Module) takeIdle() *instance {
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	n := len(m.idle)
	if n == 0 {
		return nil
	}
	in := m.idle[n-1]
	m.idle[n-1] = nil
	m.idle = m.idle[:n-1]
	return in
}

// release keeps in for a later event if it can be restored, and closes it otherwise. err is
// the event's outcome: an instance whose event was stopped (rather than returning, with
// success or not) is never kept.
func (m *Module) release(in *instance, err error) {
	in.ev = nil
	keep := false
	if m.reuse && (err == nil || Kind(err) == ErrHandler.Error()) {
		keep = in.restorable()
		m.snapshots.Store(keep)
		keep = keep && in.snap != nil
	} else if m.reuse {
		m.snapshots.Store(false)
	}
	if keep {
		m.poolMu.Lock()
		if !m.closed && len(m.idle) < m.limits.Concurrency {
			m.idle = append(m.idle, in)
			in = nil
		}
		m.poolMu.Unlock()
	}
	if in != nil {
		in.close()
	}
}

// fakeClock is WASI's clocks for a module without the clock capability: the same readings
// as wazero's defaults (wall time from 2022-01-01, monotonic from 0, each reading 1 ms after
// the one before), but kept in the instance so that a restore rewinds them.
type fakeClock struct{ wall, mono int64 }

const fakeEpoch = 1640995200 * int64(time.Second)

func (c *fakeClock) walltime() (int64, int32) {
	t := fakeEpoch + c.wall
	c.wall += int64(time.Millisecond)
	return t / 1e9, int32(t % 1e9)
}

func (c *fakeClock) nanotime() int64 {
	t := c.mono
	c.mono += int64(time.Millisecond)
	return t
}

// randSource is an instance's randomness: the system's with the random capability, the
// instance's deterministic stream otherwise. It is read in chunks with the event's deadline
// checked between them, since WASI's random_get may ask for all of memory at once.
type randSource struct{ in *instance }

func (r randSource) Read(p []byte) (int, error) {
	var src io.Reader = &r.in.rng
	if r.in.ev.m.manifest.Capabilities.Random {
		src = rand.Reader
	}
	for off := 0; off < len(p); off += randChunk {
		r.in.ev.checkDeadline()
		if _, err := io.ReadFull(src, p[off:min(off+randChunk, len(p))]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

const randChunk = 64 << 10

// stdoutOf and stderrOf are an instance's WASI stdout and stderr: the current event's.
type stdoutOf struct{ in *instance }

func (w stdoutOf) Write(p []byte) (int, error) { return w.in.ev.stdout.Write(p) }

type stderrOf struct{ in *instance }

func (w stderrOf) Write(p []byte) (int, error) { return logWriter{w.in.ev}.Write(p) }
