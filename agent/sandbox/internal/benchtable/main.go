// Command benchtable turns the output of agent/sandbox's benchmarks (`go test -bench`, any
// -count) into the tables of docs/BENCHMARKS.md's sandbox section: the median of each figure
// with its peers from the same run, the ratios, p50, p99, heap and allocations per event, the
// goals of issue 8 against what was measured, and the machine. `make bench` runs it:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./agent/sandbox/ | go run ./agent/sandbox/internal/benchtable -doc docs/BENCHMARKS.md
//
// With -doc it replaces the text between the markers (Begin, End) in that file; without, it
// prints the tables. It fails if a benchmark of the table is missing from its input, which is
// how `make test` checks the benchmarks' smoke run.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/internal/atomicfile"
)

// The markers around the generated part of docs/BENCHMARKS.md.
const (
	Begin = "<!-- benchtable: begin (written by make bench from agent/sandbox's benchmarks; edit agent/sandbox/internal/benchtable, not this) -->"
	End   = "<!-- benchtable: end -->"
)

func main() {
	doc := flag.String("doc", "", "update the tables in this Markdown file (default: print them)")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *doc); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, doc string) error {
	res, err := Parse(in)
	if err != nil {
		return err
	}
	body, err := Render(res, Machine{MemTotal: memTotal(), GoVersion: runtime.Version(), Wazero: wazeroVersion(), Date: time.Now().Format("2006-01-02")})
	if err != nil {
		return err
	}
	if doc == "" {
		_, err := io.WriteString(out, body)
		return err
	}
	old, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	updated, err := Replace(old, Begin, End, []byte(body))
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	return atomicfile.Write(doc, updated, 0o644)
}

// memTotal is the machine's memory from /proc/meminfo, in GiB ("" elsewhere).
func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return "memory unknown"
}

// wazeroVersion reads the wazero version from the go.mod of the working directory.
func wazeroVersion() string {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		return "(version unknown)"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "github.com/tetratelabs/wazero" {
			return f[1]
		}
	}
	return "(version unknown)"
}
