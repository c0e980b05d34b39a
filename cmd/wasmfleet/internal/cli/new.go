package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/wasmfleet/wasmfleet/modules/scaffold"
)

func init() {
	register("new", "create a handler directory (c, go, wat or wasi-command) to build and run", newCmd)
}

const newSynopsis = `[--dir DIR] (c|go|wat|wasi-command) NAME

Creates the directory NAME (or DIR) with a working handler: its source, manifest.yaml, a
sample event.json, a three-line README.md and the SDK it needs (wasmfleet.h for C, sdk/ for
Go). c, go and wat make handler/v1 modules; wasi-command a C program with a plain main. NAME
is the module's name: 1 to 63 of a-z, 0-9 and -. Then: wasmfleet build NAME.`

func newCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "new", newSynopsis)
	dirFlag := fs.String("dir", "", "directory to create (default: ./NAME); must not exist or be empty")
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("new needs a language and a NAME (usage: wasmfleet new %s)", firstLine(newSynopsis))
	}
	lang, err := scaffold.ParseLang(fs.Arg(0))
	if err != nil {
		return usagef("%v", err)
	}
	name := fs.Arg(1)
	if err := scaffold.ValidName(name); err != nil {
		return usagef("%v", err)
	}
	dir := *dirFlag
	if dir == "" {
		dir = name
	}
	files, err := scaffold.New(dir, lang, name)
	if errors.Is(err, scaffold.ErrExists) {
		return opError{"new", err}
	} else if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "created %s (%s):\n", dir, lang)
	for _, f := range files {
		fmt.Fprintf(env.Stdout, "  %s\n", filepath.Join(dir, f))
	}
	fmt.Fprintf(env.Stdout, "next:\n  wasmfleet build %s\n  wasmfleet run --manifest %s --device pi-7 --event-file %s %s\n",
		dir, filepath.Join(dir, scaffold.ManifestFile), filepath.Join(dir, "event.json"), filepath.Join(dir, name+".wasm"))
	return nil
}
