// Command wasmfleet-agent is the device daemon: it reads its configuration and runs the
// agent until SIGINT or SIGTERM, telling systemd (Type=notify) when it is ready, when it
// stops, and that it is alive (WatchdogSec). Everything else lives in package agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/agent"
	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/internal/sdnotify"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := doMain(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// overrides collects --set key=value flags.
type overrides map[string]string

func (o overrides) String() string { return "" }
func (o overrides) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	o[k] = v
	return nil
}

// doMain runs the agent and returns the exit code: 0 after a clean stop (or a valid config
// with --check), 1 for usage or configuration errors, 2 when the agent cannot start.
func doMain(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wasmfleet-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "configuration file (YAML); \"\" for none")
	check := fs.Bool("check", false, "validate the configuration, print it (secrets redacted) and exit")
	set := overrides{}
	fs.Var(set, "set", "override one setting, as key=value with the file's key path (mqtt.brokers=tcp://h:1883); repeatable")
	device := fs.String("device-id", "", "this device's id (overrides device_id)")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	level := fs.String("log-level", "", "debug, info, warn or error (overrides log_level)")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: wasmfleet-agent [--config FILE] [--check] [--set key=value ...] [flags]\n\n"+
			"Runs the wasmfleet device agent. Settings come from the file, then WASMFLEET_* environment\n"+
			"variables, then flags; see docs/agent.md.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if *version {
		fmt.Fprintf(stdout, "wasmfleet-agent %s %s\n", agent.Version, agent.Arch())
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "error: unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	for k, v := range map[string]string{"device_id": *device, "data_dir": *dataDir, "log_level": *level} {
		if v != "" {
			set[k] = v
		}
	}
	cfg, err := config.Load(*path, env, set)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok\n", *path)
		fmt.Fprintln(stdout, cfg.String())
		return 0
	}
	lvl, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	log := zerolog.New(stdout).Level(lvl).With().Timestamp().Str("device", cfg.DeviceID).Logger()
	log.Info().Object("config", cfg).Msg("starting")
	// agent.Run, split so systemd (Type=notify) hears READY=1 once the agent is up: New
	// has opened the data directory, trust root and sandbox, which is where starting fails.
	a, err := agent.New(ctx, cfg, log)
	if err != nil {
		log.Error().Err(err).Msg("agent cannot start")
		return 2
	}
	defer a.Close()
	warn := func(err error) { log.Warn().Err(err).Msg("systemd notification") }
	if err := sdnotify.Ready(); err != nil {
		warn(err)
	}
	live, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-live.Done()
		if ctx.Err() != nil { // a signal, not a failed Start
			if err := sdnotify.Stopping(); err != nil {
				warn(err)
			}
		}
	}()
	go func() {
		if err := sdnotify.KeepAlive(live, warn); err != nil {
			warn(err)
		}
	}()
	if err := a.Start(ctx); err != nil {
		log.Error().Err(err).Msg("agent cannot start")
		return 2
	}
	return 0
}
