// Package scaffold creates and builds handler directories: `wasmfleet new` and `wasmfleet
// build`. New writes a working handler for one of the languages (C handler/v1, Go
// handler/v1, WAT handler/v1, C wasi-command): its source, a manifest, a sample event, a
// three-line README and the SDK it needs (the C header or the Go package, embedded in this
// binary from modules/sdk, so a directory created anywhere builds without this repository
// or the network). Build validates the manifest and runs the toolchain with the flags the
// repository's own examples are built with (modules/build.sh, modules/build-go.sh), or says
// which Debian package to install when a tool is missing.
//
// It does not run, sign or publish modules: see agent/sandbox, signing and fleet/publish.
package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/wasmfleet/wasmfleet/modules/sdk"
)

// Lang is a kind of handler New can create and Build can build.
type Lang string

// The languages, as `wasmfleet new` names them.
const (
	C           Lang = "c"            // C, handler/v1 (a WASI reactor)
	Go          Lang = "go"           // Go, handler/v1 (GOOS=wasip1 -buildmode=c-shared)
	WAT         Lang = "wat"          // WebAssembly text, handler/v1
	WASICommand Lang = "wasi-command" // C, wasi-command (a plain main with wasi-libc)
)

// String names the language and the ABI it builds for, as messages show it.
func (l Lang) String() string {
	switch l {
	case C:
		return "C handler/v1"
	case Go:
		return "Go handler/v1"
	case WAT:
		return "WAT handler/v1"
	case WASICommand:
		return "C wasi-command"
	}
	return string(l)
}

// Langs lists every language, in the order help texts show them.
var Langs = []Lang{C, Go, WAT, WASICommand}

// ManifestFile is the manifest's name in a handler directory.
const ManifestFile = "manifest.yaml"

// GoVersion is the go directive of a created Go handler: //go:wasmexport, which the SDK
// uses, needs Go 1.24.
const GoVersion = "1.24"

// nameRE is the manifest's rule for module names (modules.Manifest.Validate). A name is
// also the directory, the .wasm file, the first level of the handler's topics and, for Go,
// the module path, all of which it suits.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidName reports why name cannot name a handler, or nil.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("handler name %q: want 1 to 63 of a-z, 0-9 and -, starting with a letter or digit (it is the module's name in its manifest)", name)
	}
	return nil
}

// ParseLang returns the Lang named s.
func ParseLang(s string) (Lang, error) {
	if l := Lang(s); slices.Contains(Langs, l) {
		return l, nil
	}
	names := make([]string, len(Langs))
	for i, l := range Langs {
		names[i] = string(l)
	}
	return "", fmt.Errorf("language %q: want one of %s", s, strings.Join(names, ", "))
}

//go:embed templates
var templates embed.FS

// ErrExists is returned by New when the directory exists and is not empty.
var ErrExists = errors.New("already exists and is not empty")

// New creates a handler called name in lang in dir, which must not exist or be empty, and
// returns the paths of the files it wrote, relative to dir. When it fails, it removes what
// it created.
func New(dir string, lang Lang, name string) (files []string, err error) {
	if _, err := ParseLang(string(lang)); err != nil {
		return nil, err
	}
	if err := ValidName(name); err != nil {
		return nil, err
	}
	tree, err := render(lang, name)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) > 0:
		return nil, fmt.Errorf("create %s: %w", dir, ErrExists)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	created := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	defer func() {
		if err != nil && created {
			os.RemoveAll(dir)
		}
	}()
	for _, f := range tree {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		files = append(files, f.path)
	}
	return files, nil
}

// file is one file of a handler directory, at a slash-separated path.
type file struct {
	path string
	data []byte
}

// render returns the files of a new handler, sorted by path.
func render(lang Lang, name string) ([]file, error) {
	data := struct {
		Name      string
		GoVersion string
		PrefixLen int
	}{name, GoVersion, len(name) + 1}
	root := path.Join("templates", string(lang))
	var out []file
	err := fs.WalkDir(templates, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := templates.ReadFile(p)
		if err != nil {
			return err
		}
		t, err := template.New(p).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return fmt.Errorf("template %s: %w", p, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return fmt.Errorf("template %s: %w", p, err)
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, root+"/"), ".tmpl")
		rel = strings.ReplaceAll(rel, "NAME", name)
		out = append(out, file{rel, b.Bytes()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sdkFiles, err := sdkFor(lang)
	if err != nil {
		return nil, err
	}
	out = append(out, sdkFiles...)
	slices.SortFunc(out, func(a, b file) int { return strings.Compare(a.path, b.path) })
	return out, nil
}

// sdkFor returns the SDK files a handler in lang needs: the C header beside a C handler's
// source, the Go package as a module of its own under sdk/ (which the handler's go.mod
// replaces the SDK's import path with). WAT and wasi-command handlers need none.
func sdkFor(lang Lang) ([]file, error) {
	switch lang {
	case C:
		h, err := sdk.Files.ReadFile("c/wasmfleet.h")
		if err != nil {
			return nil, fmt.Errorf("embedded C SDK: %w", err)
		}
		return []file{{"wasmfleet.h", h}}, nil
	case Go:
		srcs, err := fs.Glob(sdk.Files, "go/*.go")
		if err != nil || len(srcs) == 0 {
			return nil, fmt.Errorf("embedded Go SDK: %v files, %v", len(srcs), err)
		}
		mod := fmt.Sprintf("// The wasmfleet Go SDK (modules/sdk/go in the wasmfleet repository), copied by\n"+
			"// `wasmfleet new`.\nmodule github.com/wasmfleet/wasmfleet/modules/sdk/go\n\ngo %s\n", GoVersion)
		files := []file{{"sdk/go.mod", []byte(mod)}}
		for _, s := range srcs {
			b, err := sdk.Files.ReadFile(s)
			if err != nil {
				return nil, fmt.Errorf("embedded Go SDK: %w", err)
			}
			files = append(files, file{"sdk/" + path.Base(s), b})
		}
		return files, nil
	}
	return nil, nil
}
