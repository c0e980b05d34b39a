package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/wasmfleet/wasmfleet/modules/scaffold"
)

func init() {
	register("build", "build the handler in a directory with its toolchain (clang, Go or wat2wasm)", buildCmd)
}

const buildSynopsis = `[DIR]

Validates DIR's manifest.yaml (default DIR: .), then builds the handler into DIR/NAME.wasm
with the toolchain its sources need: a go.mod is built with Go (GOOS=wasip1), a .wat file
with wat2wasm (Debian package wabt), .c files with clang for wasm32-wasi (Debian packages
clang lld wasi-libc libclang-rt-dev-wasm32), as a reactor for abi handler/v1 and a command
for abi wasi-command. The tools' messages go to stderr.`

func buildCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "build", buildSynopsis)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("build takes at most one DIR (usage: wasmfleet build %s)", firstLine(buildSynopsis))
	}
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	res, err := scaffold.Build(ctx, dir, scaffold.Options{Stderr: env.Stderr})
	var missing *scaffold.MissingToolsError
	switch {
	case errors.As(err, &missing):
		return opError{"toolchain", err}
	case err != nil:
		return opError{"build", err}
	}
	rel := filepath.Join(dir, filepath.Base(res.Wasm))
	fmt.Fprintf(env.Stdout, "built %s (%s, %s, %d bytes): %s\n", rel, res.Manifest.Name, res.Lang, res.Size, strings.Join(res.Command, " "))
	return nil
}

// firstLine is the first line of a synopsis.
func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }
