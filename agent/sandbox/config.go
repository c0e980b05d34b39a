package sandbox

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/kv"
	"github.com/wasmfleet/wasmfleet/modules"
)

// DefaultMaxModuleSize is the largest module Load accepts when Config.MaxModuleSize is 0.
const DefaultMaxModuleSize = 32 << 20

// Config configures a Runtime. The zero value works: an in-memory compilation cache, no kv
// store (modules that ask for kv are refused), device id "local", no policy limits.
type Config struct {
	// DeviceID is this device's id, as handlers see it and as {device} expands. Default "local".
	DeviceID string
	// Policy is what this device allows any module; a manifest asking for more is refused.
	Policy modules.Policy
	// MaxModuleSize is the largest wasm binary accepted. Default DefaultMaxModuleSize.
	MaxModuleSize int
	// CacheDir, when set, keeps compiled code across restarts (sealed; see the package doc).
	CacheDir string
	// CacheKeyFile holds the per-device key that seals cache entries. It must not be inside
	// CacheDir. Default: CacheDir + ".key". Created (mode 0600) if missing.
	CacheKeyFile string
	// WorkDir is where the private per-process compilation directory is made. Default
	// os.TempDir().
	WorkDir string
	// KV is the store for modules with the kv capability. Nil: such modules are refused.
	KV *kv.Store
	// Interpreter forces wazero's interpreter even where the compiler is available.
	Interpreter bool
	// Log receives the runtime's own logs and, for modules with the log capability, theirs.
	Log zerolog.Logger
	// Now is the clock used for timing events. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.DeviceID == "" {
		c.DeviceID = "local"
	}
	if c.MaxModuleSize == 0 {
		c.MaxModuleSize = DefaultMaxModuleSize
	}
	if c.CacheDir != "" && c.CacheKeyFile == "" {
		c.CacheKeyFile = c.CacheDir + ".key"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
