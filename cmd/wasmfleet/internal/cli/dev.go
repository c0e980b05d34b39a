package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/devenv"
	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/dashboard"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
)

func init() {
	register("dev", "run a whole fleet on this machine: broker, S3, controller, dashboard, agents", devCmd)
}

const devSynopsis = `[--dir .wasmfleet-dev] [--agents 3] [--examples modules/examples] [--for DURATION] [flags]

Starts, in this process and on 127.0.0.1: an MQTT broker, an S3-compatible store, the rollout
controller, the dashboard and --agents device agents, with dev keys and a trust file made on
the first run. Then it publishes the example handlers, signed with the dev release key, rolls
each out to the agents in waves, and sends sample sensor events. Everything is kept in --dir:
run it again there and it carries on (same keys, bucket, agents and, when free, ports).
It writes DIR/env: beside the default .wasmfleet-dev, wasmfleet publish, rollout, releases and
devices use it when given no S3 or MQTT flags; with another --dir, '. DIR/env' in a shell
gives them the same settings. Ctrl-C stops it.`

func devCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "dev", devSynopsis)
	dir := fs.String("dir", devenv.DefaultDir, "the dev directory: keys, bucket, retained messages, agents' data")
	agents := fs.Int("agents", 3, "how many local agents to run (dev-1 ... dev-N)")
	group := fs.String("group", devenv.DefaultGroup, "the agents' device group")
	examples := fs.String("examples", defaultExamples(), "directory of handlers to publish and roll out (each subdirectory: manifest.yaml and its .wasm); \"\" for none")
	forDur := fs.Duration("for", 0, "stop after this long (0: at Ctrl-C); with it, exit 2 unless every example was rolled out by then")
	wavesFlag := fs.String("waves", "34,67,100", "waves of each rollout, percentages of the group")
	soak := fs.Duration("soak", devenv.DefaultSoak, "how long each wave is watched before the next opens")
	events := fs.Duration("events", devenv.DefaultEventInterval, "sample sensor events to every agent this often; 0 for none")
	mqttAddr := fs.String("mqtt-addr", "", "broker address (default: 127.0.0.1, the last run's port when free)")
	s3Addr := fs.String("s3-addr", "", "S3 store address (default: 127.0.0.1, the last run's port when free)")
	httpAddr := fs.String("http-addr", "", "dashboard address (default: 127.0.0.1, the last run's port when free)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("dev takes no arguments (usage: wasmfleet dev %s)", strings.SplitN(devSynopsis, "\n", 2)[0])
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil || *level == "" {
		return usagef("--log-level %q: want debug, info, warn or error", *level)
	}
	waves, err := rollout.ParseWaves(*wavesFlag)
	if err != nil {
		return usagef("--waves: %v", err)
	}
	switch {
	case *agents < 0:
		return usagef("--agents must not be negative")
	case *forDur < 0 || *soak <= 0 || *events < 0:
		return usagef("--for and --events must not be negative, --soak must be positive")
	}
	if *events == 0 {
		*events = -1 // devenv: negative is none
	}
	log := env.Log.Level(lvl)
	var e *devenv.Env
	cfg := devenv.Config{Dir: *dir, Agents: *agents, Group: *group, Examples: *examples, Waves: waves, Soak: *soak,
		EventInterval: *events, MQTTAddr: *mqttAddr, S3Addr: *s3Addr, HTTPAddr: *httpAddr, Log: log,
		// The dashboard of wasmfleet serve, on the environment's controller and bucket, with
		// the dev operator token (made on the first run, kept in the env file).
		Dashboard: func(srv *controller.Server, b *publish.Bucket) (http.Handler, error) {
			return dashboard.New(dashboard.Config{Server: srv, Bucket: b, Token: e.Info().Token, Log: log})
		}}
	e, err = devenv.Open(ctx, cfg)
	if errors.Is(err, devenv.ErrBusy) {
		return opError{"busy", err}
	} else if err != nil {
		return opError{"dev", err}
	}
	defer e.Close()
	if err := e.Start(ctx); err != nil {
		return opError{"dev", err}
	}
	printDevInfo(env.Stdout, e.Info(), *forDur)

	var timeout <-chan time.Time
	if *forDur > 0 {
		t := time.NewTimer(*forDur)
		defer t.Stop()
		timeout = t.C
	}
	settled := e.Settled()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-timeout:
			done = true
		case <-settled:
			settled = nil
			if *examples != "" {
				st := e.Stats()
				fmt.Fprintf(env.Stdout, "\nevery example handler runs on the agents (%d published and %d rollouts started by this run); sample events keep flowing\n",
					st.Published, st.RolloutsStarted)
			}
		}
	}
	fmt.Fprintln(env.Stderr, "stopping...")
	isSettled := settled == nil || *examples == ""
	if err := e.Close(); err != nil {
		return opError{"dev", err}
	}
	fmt.Fprintf(env.Stdout, "stopped. %s keeps the keys, the bucket and the agents: wasmfleet dev there carries on.\n", shortPath(e.Info().Dir))
	if *forDur > 0 && !isSettled && ctx.Err() == nil {
		return opError{"dev", fmt.Errorf("the example handlers were not all rolled out after --for %v", *forDur)}
	}
	return nil
}

// defaultExamples is modules/examples when the current directory is a wasmfleet checkout.
func defaultExamples() string {
	p := filepath.Join("modules", "examples")
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return p
	}
	return ""
}

// printDevInfo prints where everything is and what to try.
func printDevInfo(w io.Writer, i devenv.Info, forDur time.Duration) {
	d := shortPath(i.Dir)
	state := "carrying on with the keys, bucket and agents there"
	if i.Created {
		state = "new: dev keys and a trust file made there"
	}
	fmt.Fprintf(w, "wasmfleet dev: %d agents in group %s, state in %s (%s)\n\n", len(i.Devices), i.Group, d, state)
	fmt.Fprintf(w, "  dashboard  %s  (operator token %s)\n", i.Dashboard, i.Token)
	fmt.Fprintf(w, "  broker     %s  user %s, password %s\n", i.Broker, i.MQTTUsername, i.MQTTPassword)
	fmt.Fprintf(w, "  s3         http://%s  bucket %s, access key %s, secret key %s (the dev store accepts any)\n",
		i.S3Endpoint, i.Bucket, i.S3AccessKey, i.S3SecretKey)
	fmt.Fprintf(w, "  keys       %s, %s, %s (password in %s); trust file %s\n",
		shortPath(i.RootKey), shortPath(i.ReleaseKey), shortPath(i.RolloutKey), shortPath(i.PasswordFile), shortPath(i.Trust))
	if abs, err := filepath.Abs(devenv.DefaultDir); err == nil && abs == i.Dir {
		fmt.Fprintf(w, "  env        %s: wasmfleet publish, rollout, releases and devices use it when run here\n\n", shortPath(i.EnvFile))
	} else {
		fmt.Fprintf(w, "  env        %s: '. %s' in a shell gives wasmfleet publish, rollout, releases and devices its settings\n\n",
			shortPath(i.EnvFile), shortPath(i.EnvFile))
	}
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(i.Broker, "tcp://"))
	fmt.Fprintln(w, "try:")
	fmt.Fprintf(w, "  mosquitto_sub -h %s -p %s -u %s -P %s -v -t 'alerts/#' -t 'averages/#' -t 'converted/#' -t 'echo/#'\n",
		host, port, i.MQTTUsername, i.MQTTPassword)
	fmt.Fprintln(w, "  wasmfleet devices; wasmfleet releases; wasmfleet rollout list")
	fmt.Fprintf(w, "  wasmfleet-agent --config %s --device-id my-device --data-dir /tmp/my-device\n", shortPath(i.AgentConfig))
	if forDur > 0 {
		fmt.Fprintf(w, "\nrunning for %v (or until Ctrl-C)\n", forDur)
	} else {
		fmt.Fprintln(w, "\nCtrl-C stops it")
	}
}

// shortPath is p relative to the current directory when it lies below it.
func shortPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}
