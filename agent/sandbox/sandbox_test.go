package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent/kv"
)

const baseManifest = `
name: echo
version: 1.0.0
abi: handler/v1
triggers: [{mqtt: "in/#"}]
`

const echoManifest = baseManifest + `capabilities: {publish: ["out/{device}/#"]}
`

// publishData publishes the bytes at offset 0 (length tlen) as topic and the payload.
const echoBody = `
  (drop (call $device_id (i32.const 104) (i32.const 64)))
  (drop (call $publish (i32.const 100) (i32.const 4) (local.get $p) (local.get $n)))
  (i32.const 0)`

func TestHandlerPublishesPayload(t *testing.T) {
	r := newRuntime(t, Config{DeviceID: "pi-7"})
	src := handlerWAT(`(data (i32.const 100) "out/")`, `
  (drop (call $device_id (i32.const 104) (i32.const 64)))
  (drop (call $publish (i32.const 100) (i32.const 8) (local.get $p) (local.get $n)))
  (i32.const 0)`)
	mod := load(t, r, wat(t, src), manifest(t, echoManifest))
	res, err := mod.Handle(context.Background(), Event{Topic: "in/x", Payload: []byte(`{"v":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Publishes) != 1 || res.Publishes[0].Topic != "out/pi-7" || string(res.Publishes[0].Payload) != `{"v":1}` {
		t.Fatalf("publishes = %+v", res.Publishes)
	}
}

func TestEventTopicAndConfig(t *testing.T) {
	r := newRuntime(t, Config{})
	src := handlerWAT(`(data (i32.const 100) "out/t") (data (i32.const 200) "threshold")`, `
  (local $len i32)
  ;; topic into 300, config "threshold" into 400; publish "topic|value"
  (local.set $len (call $event_topic (i32.const 300) (i32.const 64)))
  (i32.store8 (i32.add (i32.const 300) (local.get $len)) (i32.const 124))
  (local.set $len (i32.add (local.get $len) (i32.const 1)))
  (local.set $len (i32.add (local.get $len)
    (call $config_get (i32.const 200) (i32.const 9) (i32.add (i32.const 300) (local.get $len)) (i32.const 64))))
  (drop (call $publish (i32.const 100) (i32.const 5) (i32.const 300) (local.get $len)))
  ;; a missing key is -1
  (if (i32.ne (call $config_get (i32.const 100) (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const -1))
    (then (return (i32.const 7))))
  (i32.const 0)`)
	m := manifest(t, echoManifest+"config: {threshold: \"30.5\"}\n")
	m.Capabilities.Publish = []string{"out/#"}
	mod := load(t, r, wat(t, src), m)
	res, err := mod.Handle(context.Background(), Event{Topic: "sensors/a/temperature"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Publishes[0].Payload); got != "sensors/a/temperature|30.5" {
		t.Fatalf("payload = %q", got)
	}
}

// TestPristineInstances runs a module that changes a global, its memory and a table slot on
// every event and publishes what it saw first: every event must see the initial state.
func TestPristineInstances(t *testing.T) {
	r := newRuntime(t, Config{})
	src := handlerWAT(`
  (data (i32.const 100) "leak")
  (data (i32.const 200) "A")
  (global $g (mut i32) (i32.const 65))
  (table $t 2 funcref)
  (func $one (result i32) (i32.const 1))
  (func $two (result i32) (i32.const 2))
  (elem (i32.const 0) $one)
  (elem declare func $two)
  (type $r (func (result i32)))`, `
  ;; saw: global, memory byte 200, table slot 0 (as '0'+value)
  (i32.store8 (i32.const 300) (global.get $g))
  (i32.store8 (i32.const 301) (i32.load8_u (i32.const 200)))
  (i32.store8 (i32.const 302) (i32.add (i32.const 48) (call_indirect (type $r) (i32.const 0))))
  (i32.store8 (i32.const 303) (i32.add (i32.const 48) (global.get $bump)))
  (drop (call $publish (i32.const 100) (i32.const 4) (i32.const 300) (i32.const 3)))
  ;; now change everything
  (global.set $g (i32.add (global.get $g) (i32.const 1)))
  (i32.store8 (i32.const 200) (i32.const 90))
  (table.set $t (i32.const 0) (ref.func $two))
  (i32.const 0)`)
	m := manifest(t, strings.Replace(echoManifest, "out/{device}/#", "leak", 1))
	mod := load(t, r, wat(t, src), m)
	for i := 0; i < 5; i++ {
		res, err := mod.Handle(context.Background(), Event{Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(res.Publishes[0].Payload); got != "AA1" {
			t.Fatalf("event %d saw %q, want the initial state AA1", i, got)
		}
	}
}

func TestCapabilitiesDeniedByDefault(t *testing.T) {
	r := newRuntime(t, Config{})
	cases := map[string]string{
		"clock":  `(drop (call $clock_now)) (i32.const 0)`,
		"random": `(drop (call $random_fill (i32.const 0) (i32.const 8))) (i32.const 0)`,
		"kv":     `(drop (call $kv_get (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0))) (i32.const 0)`,
	}
	for capability, body := range cases {
		t.Run(capability, func(t *testing.T) {
			mod := load(t, r, wat(t, handlerWAT("", body)), manifest(t, echoManifest))
			_, err := mod.Handle(context.Background(), Event{})
			wantKind(t, err, ErrCapability)
			if !strings.Contains(err.Error(), capability) {
				t.Fatalf("error %q does not name the capability", err)
			}
		})
	}
	// log without the capability is a silent no-op, not a violation.
	mod := load(t, r, wat(t, handlerWAT(`(data (i32.const 0) "hi")`, `(call $log (i32.const 1) (i32.const 0) (i32.const 2)) (i32.const 0)`)), manifest(t, echoManifest))
	if _, err := mod.Handle(context.Background(), Event{}); err != nil {
		t.Fatal(err)
	}
}

func TestClockAndRandomWhenGranted(t *testing.T) {
	r := newRuntime(t, Config{})
	src := handlerWAT(`(data (i32.const 100) "out/r")`, `
  (i64.store (i32.const 300) (call $clock_now))
  (drop (call $random_fill (i32.const 308) (i32.const 16)))
  (drop (call $publish (i32.const 100) (i32.const 5) (i32.const 300) (i32.const 24)))
  (i32.const 0)`)
	m := manifest(t, baseManifest+"capabilities: {publish: [\"out/#\"], clock: true, random: true}\n")
	mod := load(t, r, wat(t, src), m)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		res, err := mod.Handle(context.Background(), Event{})
		if err != nil {
			t.Fatal(err)
		}
		p := res.Publishes[0].Payload
		ns := int64(0)
		for j := 7; j >= 0; j-- {
			ns = ns<<8 | int64(p[j])
		}
		if d := time.Since(time.Unix(0, ns)); d < 0 || d > time.Minute {
			t.Fatalf("clock_now is %v away from now", d)
		}
		seen[string(p[8:])] = true
	}
	if len(seen) != 3 {
		t.Fatalf("random_fill gave the same bytes twice")
	}
}

func TestKVIsTransactionalAndPersistent(t *testing.T) {
	dir := t.TempDir()
	store, err := kv.Open(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t, Config{KV: store})
	// Each event increments counter "n" (one byte); a payload "trap" traps after the write.
	src := handlerWAT(`(data (i32.const 100) "n") (data (i32.const 110) "out/c")`, `
  (if (i32.lt_s (call $kv_get (i32.const 100) (i32.const 1) (i32.const 200) (i32.const 1)) (i32.const 0))
    (then (i32.store8 (i32.const 200) (i32.const 48))))
  (i32.store8 (i32.const 200) (i32.add (i32.load8_u (i32.const 200)) (i32.const 1)))
  (drop (call $kv_set (i32.const 100) (i32.const 1) (i32.const 200) (i32.const 1)))
  (drop (call $publish (i32.const 110) (i32.const 5) (i32.const 200) (i32.const 1)))
  (if (i32.eq (local.get $n) (i32.const 4)) (then unreachable))
  (i32.const 0)`)
	m := manifest(t, baseManifest+"capabilities: {publish: [\"out/#\"], kv: {max_bytes: 64}}\n")
	mod := load(t, r, wat(t, src), m)
	run := func(payload string) (string, error) {
		res, err := mod.Handle(context.Background(), Event{Payload: []byte(payload)})
		if err != nil {
			return "", err
		}
		return string(res.Publishes[0].Payload), nil
	}
	for i, want := range []string{"1", "2"} {
		if got, err := run("x"); err != nil || got != want {
			t.Fatalf("event %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if _, err := run("trap"); !errors.Is(err, ErrTrap) {
		t.Fatalf("trap event: %v", err)
	}
	if got, _ := run("x"); got != "3" {
		t.Fatalf("after a trapped event the counter is %q, want 3 (the trapped write must be discarded)", got)
	}
	// A new store on the same directory (an agent restart) sees the committed state.
	store2, err := kv.Open(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	r2 := newRuntime(t, Config{KV: store2})
	mod = load(t, r2, wat(t, src), m)
	if got, err := run("x"); err != nil || got != "4" {
		t.Fatalf("after restart: %q, %v; want 4", got, err)
	}
}

func TestMemoryLimit(t *testing.T) {
	r := newRuntime(t, Config{})
	m := manifest(t, echoManifest+"limits: {memory: 256KiB}\n")
	// Grows one page at a time until refused, then traps.
	grow := handlerWAT("", `
  (block $done (loop $l
    (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
    (br $l)))
  (if (i32.ne (memory.size) (i32.const 4)) (then (return (i32.const 9))))
  unreachable`)
	mod := load(t, r, wat(t, grow), m)
	_, err := mod.Handle(context.Background(), Event{})
	wantKind(t, err, ErrMemoryLimit)

	huge := strings.Replace(handlerWAT("", "(i32.const 0)"), "(memory (export \"memory\") 1)", "(memory (export \"memory\") 65536)", 1)
	_, err = r.Load(context.Background(), wat(t, huge), m)
	wantKind(t, err, ErrMemoryLimit)
}

// TestDeadlineHoldsForLoopFreeCode: an exponential call tree with no loop, which
// WithCloseOnContextDone cannot stop, ends with ErrTimeout within deadline + 10ms, in the
// start function as well as in the handler.
func TestDeadlineHoldsForLoopFreeCode(t *testing.T) {
	rec := `(func $f (param $d i32) (result i32)
    (if (result i32) (i32.eqz (local.get $d))
      (then (i32.const 1))
      (else (i32.add (call $f (i32.sub (local.get $d) (i32.const 1)))
                     (call $f (i32.sub (local.get $d) (i32.const 1)))))))`
	m := manifest(t, echoManifest+"limits: {timeout: 50ms}\n")
	cases := map[string]string{
		"handler": handlerWAT(rec, `(drop (call $f (i32.const 60))) (i32.const 0)`),
		"start":   handlerWAT(rec+`(func $s (drop (call $f (i32.const 60)))) (start $s)`, `(i32.const 0)`),
		"loop":    handlerWAT("", `(loop $l (br $l)) (i32.const 0)`),
	}
	for _, interp := range []bool{false, true} {
		r := newRuntime(t, Config{Interpreter: interp})
		for name, src := range cases {
			t.Run(fmt.Sprintf("%s/interpreter=%v", name, interp), func(t *testing.T) {
				mod := load(t, r, wat(t, src), m)
				start := time.Now()
				_, err := mod.Handle(context.Background(), Event{})
				took := time.Since(start)
				wantKind(t, err, ErrTimeout)
				if took > 60*time.Millisecond {
					t.Fatalf("stopped after %v, want within 50ms + 10ms", took)
				}
			})
		}
	}
}

// TestCancelStopsGuest checks that the caller's context ends a spinning guest promptly, as
// ErrCancelled rather than a timeout of the module's own.
func TestCancelStopsGuest(t *testing.T) {
	for _, interp := range []bool{false, true} {
		r := newRuntime(t, Config{Interpreter: interp})
		mod := load(t, r, wat(t, handlerWAT("", `(loop $l (br $l)) (i32.const 0)`)), manifest(t, echoManifest+"limits: {timeout: 1h}\n"))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		start := time.Now()
		_, err := mod.Handle(ctx, Event{})
		took := time.Since(start)
		cancel()
		wantKind(t, err, ErrCancelled)
		if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline exceeded") {
			t.Errorf("interpreter=%v: %v does not say why it was cancelled", interp, err)
		}
		if took > 30*time.Millisecond {
			t.Errorf("interpreter=%v: stopped after %v, want within 20ms + 10ms", interp, took)
		}
	}
}

func TestConcurrencyLimit(t *testing.T) {
	r := newRuntime(t, Config{})
	// The handler spins until the deadline; with concurrency 1 a second event must wait.
	mod := load(t, r, wat(t, handlerWAT("", `(loop $l (br $l)) (i32.const 0)`)), manifest(t, echoManifest+"limits: {timeout: 200ms, concurrency: 1}\n"))
	var wg sync.WaitGroup
	wg.Add(1)
	started := make(chan struct{})
	go func() {
		defer wg.Done()
		close(started)
		mod.Handle(context.Background(), Event{})
	}()
	<-started
	// Poll until the first event holds the slot.
	for deadline := time.Now().Add(time.Second); len(mod.slots) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("first event never started")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := mod.Handle(ctx, Event{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "slot") {
		t.Fatalf("second event: %v, want it to wait for a slot until its context ended", err)
	}
	wg.Wait()
}

func TestImportsChecked(t *testing.T) {
	r := newRuntime(t, Config{})
	unknown := `(module (import "env" "system" (func (param i32) (result i32))) (memory (export "memory") 1)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32) (i32.const 0)))`
	_, err := r.Load(context.Background(), wat(t, unknown), manifest(t, echoManifest))
	wantKind(t, err, ErrUnknownImport)
	if !strings.Contains(err.Error(), "env.system") {
		t.Fatalf("error %q does not name the import", err)
	}
	wrongType := strings.Replace(unknown, `"env" "system" (func (param i32) (result i32))`, `"wasmfleet" "publish" (func (param i32))`, 1)
	_, err = r.Load(context.Background(), wat(t, wrongType), manifest(t, echoManifest))
	wantKind(t, err, ErrUnknownImport)
	memImport := strings.Replace(unknown, `(import "env" "system" (func (param i32) (result i32)))`, `(import "wasmfleet" "memory" (memory 1))`, 1)
	memImport = strings.Replace(memImport, `(memory (export "memory") 1)`, "", 1)
	_, err = r.Load(context.Background(), wat(t, memImport), manifest(t, echoManifest))
	wantKind(t, err, ErrUnknownImport)
}

func TestLoadRefusals(t *testing.T) {
	r := newRuntime(t, Config{MaxModuleSize: 1024, Policy: policyMax256K})
	ok := wat(t, handlerWAT("", "(i32.const 0)"))
	small := manifest(t, echoManifest+"limits: {memory: 128KiB}\n")
	if _, err := r.Load(context.Background(), append(ok, make([]byte, 2048)...), small); !errors.Is(err, ErrModuleTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := r.Load(context.Background(), []byte("\x00asm\x01\x00\x00\x00\x01\xff"), small); !errors.Is(err, ErrInvalidModule) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := r.Load(context.Background(), ok, manifest(t, echoManifest+"limits: {memory: 1MiB}\n")); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "limits.memory") {
		t.Fatalf("over policy: %v", err)
	}
	noHandle := `(module (memory (export "memory") 1) (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 0)))`
	if _, err := r.Load(context.Background(), wat(t, noHandle), manifest(t, echoManifest+"limits: {memory: 128KiB}\n")); !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "wasmfleet_handle") {
		t.Fatalf("missing export: %v", err)
	}
}

func TestWASICommand(t *testing.T) {
	r := newRuntime(t, Config{DeviceID: "pi-3"})
	// Copies stdin to stdout, then writes the WASMFLEET_TOPIC environment variable's length.
	src := `(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; iovec at 0: buf 100, len 1000; nread at 8
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 1000))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))`
	m := manifest(t, `
name: cmd
version: 1.0.0
abi: wasi-command
triggers: [{mqtt: "in"}]
capabilities: {publish: ["converted/{device}"]}
output: converted/{device}
`)
	mod := load(t, r, wat(t, src), m)
	res, err := mod.Handle(context.Background(), Event{Topic: "in", Payload: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Publishes) != 1 || res.Publishes[0].Topic != "converted/pi-3" || string(res.Publishes[0].Payload) != "hello" {
		t.Fatalf("publishes = %+v", res.Publishes)
	}
	m.Limits.MaxOutput = 4
	mod = load(t, r, wat(t, src), m)
	_, err = mod.Handle(context.Background(), Event{Topic: "in", Payload: []byte("hello")})
	wantKind(t, err, ErrOutputLimit)
}

// TestCacheSurvivesRestartAndRejectsForgery: compiled code is reused across runtimes, and an
// entry altered on disk is deleted instead of being loaded.
func TestCacheSurvivesRestartAndRejectsForgery(t *testing.T) {
	base := t.TempDir()
	cacheDir := filepath.Join(base, "cache")
	cfg := Config{CacheDir: cacheDir, WorkDir: base}
	wasm := wat(t, handlerWAT("", "(i32.const 0)"))
	m := manifest(t, echoManifest)

	r := newRuntime(t, cfg)
	load(t, r, wasm, m)
	entries := cacheEntries(t, cacheDir)
	if len(entries) == 0 {
		t.Fatal("nothing was written to the cache directory")
	}
	if _, err := os.Stat(cacheDir + ".key"); err != nil {
		t.Fatalf("no cache key: %v", err)
	}
	r.Close(context.Background())

	// Forge: keep the magic, change the code after the seal.
	raw, err := os.ReadFile(entries[0])
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 0xFF
	if err := os.WriteFile(entries[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := newRuntime(t, cfg)
	if _, err := os.Stat(entries[0]); err == nil {
		// It may have been re-sealed by a recompile only after a Load; none has happened yet.
		t.Fatal("a forged cache entry was kept")
	}
	mod := load(t, r2, wasm, m)
	if _, err := mod.Handle(context.Background(), Event{}); err != nil {
		t.Fatal(err)
	}
	if got := cacheEntries(t, cacheDir); len(got) != len(entries) {
		t.Fatalf("after recompiling, %d entries, want %d", len(got), len(entries))
	}

	if _, err := New(context.Background(), Config{CacheDir: cacheDir, CacheKeyFile: filepath.Join(cacheDir, "k")}); err == nil {
		t.Fatal("a key inside the cache directory was accepted")
	}
}

// cacheEntries lists the compiled code in a cache directory (not its index).
func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && info.Name() != indexName {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestPublishRules(t *testing.T) {
	r := newRuntime(t, Config{DeviceID: "pi-7"})
	pub := func(topic string) string {
		return fmt.Sprintf(`(data (i32.const 100) %q)`, topic)
	}
	cases := []struct {
		topic string
		want  error
	}{
		{"out/pi-7/a", nil},
		{"out/pi-8/a", ErrForbiddenTopic},
		{"out/pi-7/+", ErrForbiddenTopic},
		{"elsewhere", ErrForbiddenTopic},
	}
	for _, c := range cases {
		src := handlerWAT(pub(c.topic), fmt.Sprintf(`(drop (call $publish (i32.const 100) (i32.const %d) (i32.const 0) (i32.const 0))) (i32.const 0)`, len(c.topic)))
		mod := load(t, r, wat(t, src), manifest(t, echoManifest))
		_, err := mod.Handle(context.Background(), Event{})
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("publish %q: %v, want %v", c.topic, err, c.want)
		}
	}
}

func TestStatsCountFailuresByKind(t *testing.T) {
	r := newRuntime(t, Config{})
	mod := load(t, r, wat(t, handlerWAT("", `(if (local.get $n) (then unreachable)) (i32.const 0)`)), manifest(t, echoManifest))
	mod.Handle(context.Background(), Event{})
	mod.Handle(context.Background(), Event{Payload: []byte("x")})
	s := mod.Stats()
	if s.Invocations != 2 || s.Failures != 1 || s.ByKind["trap"] != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

// TestDeadlineHoldsForBulkOperations: a guest first runs a cheap loop long enough for the
// fuel refill to grow to its largest, then loops over memory.fill of all 16 MiB of its
// memory (milliseconds per iteration) and table.fill of its whole table. Fuel charged per
// iteration alone would let each refill last minutes; charged by the operations' length, the
// guest still ends with ErrTimeout within its deadline + 10 ms, event after event.
func TestDeadlineHoldsForBulkOperations(t *testing.T) {
	for _, body := range []string{
		`(loop $fill (memory.fill (i32.const 0) (i32.const 7) (i32.const 16777216)) (br $fill))`,
		`(loop $fill (table.fill 0 (i32.const 0) (ref.null func) (i32.const 65536)) (br $fill))`,
	} {
		src := `(module
  (memory (export "memory") 256)
  (table 65536 65536 funcref)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (local $i i32)
    (loop $warm (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $warm (i32.lt_u (local.get $i) (i32.const 3000000))))
    ` + body + `
    (i32.const 0)))`
		for _, interp := range []bool{false, true} {
			t.Run(fmt.Sprintf("%.17s/interpreter=%v", body[12:], interp), func(t *testing.T) {
				r := newRuntime(t, Config{Interpreter: interp})
				mod := load(t, r, wat(t, src), manifest(t, baseManifest+"limits: {memory: 16MiB, timeout: 50ms}\n"))
				for range 3 {
					start := time.Now()
					_, err := mod.Handle(context.Background(), Event{})
					took := time.Since(start)
					wantKind(t, err, ErrTimeout)
					if took > 60*time.Millisecond {
						t.Fatalf("stopped after %v, want within 50ms + 10ms", took)
					}
				}
			})
		}
	}
}

// TestDeadlineHoldsForHostCalls: after ramping the fuel refill up, a guest loops over host
// calls that each do real work the fuel does not see: WASI random_get of 16 MiB, and
// random_fill of 64 KiB with the random capability; or over cheap host calls, which are
// charged in fuel. The deadline still holds within 10 ms.
func TestDeadlineHoldsForHostCalls(t *testing.T) {
	for _, c := range []struct{ name, imp, call, caps string }{
		{"wasi random_get", `(import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))`,
			`(drop (call $r (i32.const 0) (i32.const 16777216)))`, ""},
		{"random_fill", `(import "wasmfleet" "random_fill" (func $r (param i32 i32) (result i32)))`,
			`(drop (call $r (i32.const 0) (i32.const 65536)))`, "capabilities: {random: true}\n"},
		// Cheap calls, many of them: each costs fuel, not a clock read.
		{"device_id", `(import "wasmfleet" "device_id" (func $r (param i32 i32) (result i32)))`,
			`(drop (call $r (i32.const 0) (i32.const 16)))`, ""},
		{"config_get of a missing key", `(import "wasmfleet" "config_get" (func $r (param i32 i32 i32 i32) (result i32)))`,
			`(drop (call $r (i32.const 0) (i32.const 8) (i32.const 0) (i32.const 0)))`, ""},
	} {
		src := `(module
  ` + c.imp + `
  (memory (export "memory") 256)
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32)
    (local $i i32)
    (loop $warm (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $warm (i32.lt_u (local.get $i) (i32.const 3000000))))
    (loop $l ` + c.call + ` (br $l))
    (i32.const 0)))`
		for _, interp := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/interpreter=%v", c.name, interp), func(t *testing.T) {
				r := newRuntime(t, Config{Interpreter: interp})
				mod := load(t, r, wat(t, src), manifest(t, baseManifest+c.caps+"limits: {memory: 16MiB, timeout: 50ms}\n"))
				for range 3 {
					start := time.Now()
					_, err := mod.Handle(context.Background(), Event{})
					took := time.Since(start)
					wantKind(t, err, ErrTimeout)
					if took > 60*time.Millisecond {
						t.Fatalf("stopped after %v, want within 50ms + 10ms", took)
					}
				}
			})
		}
	}
}

// The cache keeps what RetainCompiled is told to keep, across restarts (its index of which
// module each entry came from is sealed too), and removes the rest; a module already loaded
// keeps running after its code left the cache. An index that does not verify makes every
// entry nobody's, so the next RetainCompiled removes them: a forger can only cost a compile.
func TestCacheRetainCompiled(t *testing.T) {
	base := t.TempDir()
	cacheDir := filepath.Join(base, "cache")
	cfg := Config{CacheDir: cacheDir, WorkDir: base}
	a := wat(t, handlerWAT("", "(i32.const 0)"))
	b := wat(t, handlerWAT("", "(i32.const 1)"))
	digest := func(wasm []byte) string { s := sha256.Sum256(wasm); return hex.EncodeToString(s[:]) }
	m := manifest(t, echoManifest)

	r := newRuntime(t, cfg)
	load(t, r, a, m)
	modB := load(t, r, b, m)
	if got := cacheEntries(t, cacheDir); len(got) != 2 {
		t.Fatalf("%d entries after loading two modules, want 2: %v", len(got), got)
	}
	if n, err := r.RetainCompiled(map[string]bool{digest(a): true}); n != 1 || err != nil {
		t.Fatalf("RetainCompiled(a) removed %d, %v; want 1", n, err)
	}
	if got := cacheEntries(t, cacheDir); len(got) != 1 {
		t.Fatalf("%d entries after keeping one module, want 1: %v", len(got), got)
	}
	if _, err := modB.Handle(context.Background(), Event{}); !errors.Is(err, ErrHandler) {
		t.Fatalf("b after its code left the cache: %v, want its handler's failure", err)
	}
	r.Close(context.Background())

	r2 := newRuntime(t, cfg)
	if n, err := r2.RetainCompiled(map[string]bool{digest(a): true}); n != 0 || err != nil {
		t.Fatalf("after a restart, RetainCompiled(a) removed %d, %v; want 0", n, err)
	}
	load(t, r2, b, m)
	if got := cacheEntries(t, cacheDir); len(got) != 2 {
		t.Fatalf("%d entries after loading b again, want 2", len(got))
	}
	r2.Close(context.Background())

	index := filepath.Join(cacheDir, indexName)
	raw, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-2] ^= 0x01
	if err := os.WriteFile(index, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r3 := newRuntime(t, cfg)
	if _, err := os.Stat(index); err == nil {
		t.Fatal("a forged index was kept")
	}
	if n, err := r3.RetainCompiled(map[string]bool{digest(a): true, digest(b): true}); n != 2 || err != nil {
		t.Fatalf("after a forged index, RetainCompiled removed %d, %v; want both entries", n, err)
	}
	if got := cacheEntries(t, cacheDir); len(got) != 0 {
		t.Fatalf("%d entries left, want none", len(got))
	}
}

// TestProcExitZeroInAHandler: proc_exit(0) ends a command well, but a handler/v1 export
// must return; calling it there is a handler failure, not a success with no result (which
// made Handle index a result it did not have, and panic).
func TestProcExitZeroInAHandler(t *testing.T) {
	for _, export := range []string{"wasmfleet_alloc", "wasmfleet_handle", "_initialize"} {
		t.Run(export, func(t *testing.T) {
			exits := map[string]string{"wasmfleet_alloc": "(i32.const 1024)", "wasmfleet_handle": "(i32.const 0)", "_initialize": ""}
			exits[export] = "(call $exit (i32.const 0)) " + exits[export]
			wasm := wat(t, `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_initialize") `+exits["_initialize"]+`)
  (func (export "wasmfleet_alloc") (param i32) (result i32) `+exits["wasmfleet_alloc"]+`)
  (func (export "wasmfleet_handle") (param i32 i32) (result i32) `+exits["wasmfleet_handle"]+`))`)
			mod := load(t, newRuntime(t, Config{}), wasm, nil)
			if _, err := mod.Handle(context.Background(), Event{Payload: []byte("x")}); !errors.Is(err, ErrHandler) {
				t.Fatalf("Handle: %v, want %v", err, ErrHandler)
			}
		})
	}
}

// TestInitializeTakesNothing: a handler/v1 module's _initialize must be [] -> [].
func TestInitializeTakesNothing(t *testing.T) {
	wasm := wat(t, `(module
  (memory (export "memory") 1)
  (func (export "_initialize") (param i32))
  (func (export "wasmfleet_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmfleet_handle") (param i32 i32) (result i32) (i32.const 0)))`)
	if _, err := newRuntime(t, Config{}).Load(context.Background(), wasm, nil); !errors.Is(err, ErrInvalidModule) {
		t.Fatalf("Load: %v, want %v", err, ErrInvalidModule)
	}
}
