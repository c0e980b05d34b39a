// Command wasmfleet is the fleet CLI: build, sign, verify, run, publish and roll out modules.
// All of it lives in cmd/wasmfleet/internal/cli; this file only wires the process to it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
