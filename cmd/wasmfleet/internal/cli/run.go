package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmfleet/wasmfleet/agent/kv"
	"github.com/wasmfleet/wasmfleet/agent/sandbox"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

func init() {
	register("run", "run one event through a module in the agent's sandbox", runCmd)
}

const runSynopsis = "[--manifest FILE] [--topic T] [--device ID] (--event JSON | --event-file F) MODULE.wasm"

func runCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "run", runSynopsis)
	manifestPath := fs.String("manifest", "", "module manifest (YAML); without it nothing is granted and default limits apply")
	topicFlag := fs.String("topic", "", "event topic (default: the manifest's first MQTT trigger, wildcards filled in)")
	device := fs.String("device", "local", "device id the handler sees")
	event := fs.String("event", "", "event payload")
	eventFile := fs.String("event-file", "", "read the event payload from this file (- for stdin)")
	noCache := fs.Bool("no-cache", false, "do not keep compiled code in the user's cache directory")
	kvDir := fs.String("kv-dir", "", "directory for kv state (default: a temporary directory, removed afterwards)")
	interp := fs.Bool("interpreter", false, "use wazero's interpreter (what 32-bit ARM devices run)")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("run needs exactly one MODULE.wasm (usage: wasmfleet run %s)", runSynopsis)
	}
	if err := topic.ValidateDeviceID(*device); err != nil {
		return usagef("--device: %v", err)
	}
	var payload []byte
	switch {
	case *event != "" && *eventFile != "":
		return usagef("give --event or --event-file, not both")
	case *eventFile == "-":
		b, err := io.ReadAll(env.Stdin)
		if err != nil {
			return usagef("read event from stdin: %v", err)
		}
		payload = b
	case *eventFile != "":
		b, err := os.ReadFile(*eventFile)
		if err != nil {
			return usagef("read --event-file: %v", err)
		}
		payload = b
	default:
		payload = []byte(*event)
	}
	wasmPath := fs.Arg(0)
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return usagef("read module: %v", err)
	}
	var m *modules.Manifest
	if *manifestPath != "" {
		raw, err := os.ReadFile(*manifestPath)
		if err != nil {
			return usagef("read --manifest: %v", err)
		}
		if m, err = modules.Parse(raw); err != nil {
			return usagef("%s: %v", *manifestPath, err)
		}
	} else {
		m = modules.Default(defaultName(wasmPath))
	}
	t := *topicFlag
	if t == "" {
		t = defaultTopic(m, *device)
	}

	cfg := sandbox.Config{DeviceID: *device, Interpreter: *interp, Log: env.Log}
	if m.Capabilities.KV != nil {
		dir := *kvDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "wasmfleet-run-kv-*")
			if err != nil {
				return fmt.Errorf("kv directory: %w", err)
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		store, err := kv.Open(dir, env.Log)
		if err != nil {
			return usagef("--kv-dir: %v", err)
		}
		cfg.KV = store
	}
	// Compiled code is kept (sealed, as on a device) in the user's cache directory, so that
	// a large module is compiled once rather than on every run.
	if dir, err := os.UserCacheDir(); err == nil && !*noCache {
		cfg.CacheDir = filepath.Join(dir, "wasmfleet", "compiled")
		if err := os.MkdirAll(filepath.Dir(cfg.CacheDir), 0o700); err != nil {
			cfg.CacheDir = ""
		}
	}
	rt, err := sandbox.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	mod, err := rt.Load(ctx, wasm, m)
	if err != nil {
		return err
	}
	res, err := mod.Handle(ctx, sandbox.Event{Topic: t, Payload: payload})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(env.Stdout)
	for _, p := range res.Publishes {
		line := struct {
			Topic   string `json:"topic"`
			Payload any    `json:"payload"`
		}{Topic: p.Topic, Payload: string(p.Payload)}
		if json.Valid(p.Payload) {
			line.Payload = json.RawMessage(p.Payload)
		}
		if err := enc.Encode(line); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	return nil
}

// defaultName makes a module name from a file name: threshold-alert.wasm -> threshold-alert.
func defaultName(path string) string {
	base := strings.ToLower(strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)))
	var b strings.Builder
	for _, c := range base {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" || len(name) > 63 {
		return "module"
	}
	return name
}

// defaultTopic is the first MQTT trigger of m with {device} expanded and wildcards filled in,
// or "" when m has none.
func defaultTopic(m *modules.Manifest, device string) string {
	for _, t := range m.Triggers {
		if t.MQTT == "" {
			continue
		}
		levels := strings.Split(topic.Expand(t.MQTT, device), "/")
		for i, l := range levels {
			if l == "+" || l == "#" {
				levels[i] = device
			}
		}
		return strings.Join(levels, "/")
	}
	return ""
}
