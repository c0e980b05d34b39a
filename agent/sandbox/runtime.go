package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmfleet/wasmfleet/agent/sandbox/internal/rewrite"
	"github.com/wasmfleet/wasmfleet/modules"
)

// Runtime is the agent's one wazero runtime, with the host functions of the ABI and WASI
// instantiated once. It is safe for concurrent use.
type Runtime struct {
	cfg       Config
	realClock bool // Config.Now is time.Now: events take their start from the deadline's clock
	rt        wazero.Runtime
	cache     *sealedCache // nil without Config.CacheDir
	allowed   map[[2]string]api.FunctionDefinition
	// recordWrites instruments the modules it loads to record the chunks of memory they
	// write (rewrite.Options.Written). On for the compiler; benchmarks turn it off to compare.
	recordWrites bool

	mu     sync.Mutex // serialises compilation (and the cache sync after it)
	closed bool
}

// New starts a runtime.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	realClock := cfg.Now == nil
	cfg = cfg.withDefaults()
	r := &Runtime{cfg: cfg, realClock: realClock, recordWrites: !cfg.Interpreter}
	rc := wazero.NewRuntimeConfig()
	if cfg.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	if cfg.CacheDir != "" {
		sc, cc, err := openSealedCache(cfg.CacheDir, cfg.CacheKeyFile, cfg.WorkDir, cfg.Log)
		if err != nil {
			return nil, fmt.Errorf("start sandbox: %w", err)
		}
		r.cache = sc
		rc = rc.WithCompilationCache(cc)
	}
	r.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r.rt); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("start sandbox: instantiate WASI: %w", err)
	}
	host, err := instantiateHost(ctx, r.rt)
	if err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("start sandbox: instantiate host functions: %w", err)
	}
	yield, err := instantiateYield(ctx, r.rt)
	if err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("start sandbox: instantiate the yield function: %w", err)
	}
	// The rewrite refuses modules that import from rewrite.YieldModule themselves, so the
	// yield function is in this list only for the signature check of the import it adds.
	r.allowed = map[[2]string]api.FunctionDefinition{}
	for _, m := range []api.Module{host, yield, r.rt.Module(wasi_snapshot_preview1.ModuleName)} {
		for name, def := range m.ExportedFunctionDefinitions() {
			r.allowed[[2]string{m.Name(), name}] = def
		}
	}
	return r, nil
}

// Close releases the runtime and every module loaded from it.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.rt.Close(ctx)
	if r.cache != nil {
		err = errors.Join(err, r.cache.close())
	}
	return err
}

// RetainCompiled removes from the compilation cache the code of every module whose sha256
// (hex, of the wasm given to Load) is not in keep, and code whose module it does not know:
// the cache keeps a version for a quick start after a restart, and a device updated often
// would otherwise keep every version it ever ran. Modules loaded already keep running; one
// loaded again later is compiled again. It returns how many entries it removed.
func (r *Runtime) RetainCompiled(keep map[string]bool) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil || r.closed {
		return 0, nil
	}
	return r.cache.retain(keep)
}

// Load checks a module against its manifest and the device policy, instruments and compiles
// it. A nil manifest means modules.Default: nothing granted, default limits. The wasm must
// already be verified; Load trusts nothing but checks everything.
func (r *Runtime) Load(ctx context.Context, wasm []byte, m *modules.Manifest) (*Module, error) {
	if m == nil {
		m = modules.Default("module")
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	if err := r.cfg.Policy.Check(m, r.cfg.DeviceID); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if len(wasm) > r.cfg.MaxModuleSize {
		return nil, fmt.Errorf("%w: module is %d bytes, this device accepts at most %d", ErrModuleTooLarge, len(wasm), r.cfg.MaxModuleSize)
	}
	limits := m.Limits.WithDefaults()
	inst, err := rewrite.InstrumentWith(wasm, rewrite.Options{
		Stateful: statefulImport,
		// Only for modules whose instances are restored (see reusable); and the interpreter
		// (32-bit ARM) keeps comparing all of memory: there a store's extra instructions
		// would cost more than the comparison saves.
		Written: r.recordWrites && mayRestore(m),
		Tracked: trackedImport,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	if need := inst.MinMemoryPages * 65536; need > uint64(limits.Memory) {
		return nil, fmt.Errorf("%w: module declares %s of initial memory, its limit is %s", ErrMemoryLimit, modules.Size(need), limits.Memory)
	}
	for _, imp := range inst.Imports {
		if _, ok := r.allowed[[2]string{imp.Module, imp.Name}]; !ok || imp.Kind != 0 {
			return nil, fmt.Errorf("%w: %s.%s is not something a module may import (see modules/ABI.md)", ErrUnknownImport, imp.Module, imp.Name)
		}
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	compiled, err := r.rt.CompileModule(ctx, inst.Wasm)
	if err == nil && r.cache != nil {
		sum := sha256.Sum256(wasm)
		if serr := r.cache.sync(hex.EncodeToString(sum[:])); serr != nil {
			r.cfg.Log.Warn().Err(serr).Msg("could not persist compiled code; it will be compiled again next start")
		}
	}
	r.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	mod, err := r.newModule(compiled, inst, m, limits)
	if err != nil {
		compiled.Close(ctx)
		return nil, err
	}
	return mod, nil
}

// checkSignatures compares each imported function's type with the host's.
func (r *Runtime) checkSignatures(compiled wazero.CompiledModule) error {
	for _, def := range compiled.ImportedFunctions() {
		mod, name, _ := def.Import()
		want := r.allowed[[2]string{mod, name}]
		if !sameTypes(def.ParamTypes(), want.ParamTypes()) || !sameTypes(def.ResultTypes(), want.ResultTypes()) {
			return fmt.Errorf("%w: %s.%s is imported as %s, the host provides %s", ErrUnknownImport, mod, name, sig(def), sig(want))
		}
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sig(d api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := ""
		for i, t := range ts {
			if i > 0 {
				s += ","
			}
			s += api.ValueTypeName(t)
		}
		return s
	}
	return "(" + names(d.ParamTypes()) + ")->(" + names(d.ResultTypes()) + ")"
}
