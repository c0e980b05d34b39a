package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Results are the benchmark lines of one or more `go test -bench` runs, and what the run
// said about the machine.
type Results struct {
	// Runs holds, per benchmark (its name without "Benchmark" and the -GOMAXPROCS suffix)
	// and unit ("ns/op", "p50-ns", ..., and "iterations"), every value reported, in order.
	Runs    map[string]map[string][]float64
	CPU     string // the "cpu:" line
	GOOS    string
	GOARCH  string
	Procs   int      // the -N suffix: GOMAXPROCS
	Node    string   // the Node.js version a peer logged ("v20.20.2")
	LoadAvg []string // "loadavg-before:" and "-after:" lines (the Makefile adds them)
}

// maxLine bounds one line of input: a benchmark line is a few hundred bytes.
const maxLine = 64 << 10

// Parse reads `go test -bench` output. Lines it does not know are skipped; a benchmark line
// that does not parse is an error, naming the line.
func Parse(r io.Reader) (*Results, error) {
	res := &Results{Runs: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Benchmark"):
			if err := res.benchmark(line); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		case strings.HasPrefix(line, "cpu: "):
			res.CPU = strings.TrimPrefix(line, "cpu: ")
		case strings.HasPrefix(line, "goos: "):
			res.GOOS = strings.TrimPrefix(line, "goos: ")
		case strings.HasPrefix(line, "goarch: "):
			res.GOARCH = strings.TrimPrefix(line, "goarch: ")
		case strings.HasPrefix(line, "loadavg-"):
			res.LoadAvg = append(res.LoadAvg, line)
		case strings.Contains(line, ": node v"):
			v := line[strings.Index(line, ": node v")+len(": node "):]
			if i := strings.IndexAny(v, ", "); i > 0 {
				v = v[:i]
			}
			res.Node = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	if len(res.Runs) == 0 {
		return nil, errors.New("no benchmark results in the input")
	}
	return res, nil
}

// benchmark parses "BenchmarkName/sub-2   123   4567 ns/op   89 B/op ...".
func (res *Results) benchmark(line string) error {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		if len(f) >= 2 && (f[1] == "---" || strings.HasPrefix(f[1], "---")) {
			return nil // "BenchmarkX --- FAIL" and the like: not a result
		}
		if len(f) == 1 {
			return nil // a benchmark's name alone, when its sub-benchmarks follow
		}
		return fmt.Errorf("benchmark line %q: want a name, an iteration count and value-unit pairs", line)
	}
	name := strings.TrimPrefix(f[0], "Benchmark")
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		if p, err := strconv.Atoi(name[i+1:]); err == nil && p > 0 {
			name, res.Procs = name[:i], p
		}
	}
	if name == "" {
		return fmt.Errorf("benchmark line %q has no name", line)
	}
	iters, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return fmt.Errorf("benchmark line %q: iterations %q: %v", line, f[1], err)
	}
	units := res.Runs[name]
	if units == nil {
		units = map[string][]float64{}
		res.Runs[name] = units
	}
	units["iterations"] = append(units["iterations"], float64(iters))
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("benchmark line %q: value %q is not a measurement", line, f[i])
		}
		units[f[i+1]] = append(units[f[i+1]], v)
	}
	return nil
}

// Median returns the median of the values of benchmark name in unit, and whether there
// were any.
func (res *Results) Median(name, unit string) (float64, bool) {
	vs := res.Runs[name][unit]
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// Count is the number of runs of benchmark name (its ns/op values).
func (res *Results) Count(name string) int { return len(res.Runs[name]["ns/op"]) }

// Replace returns doc with the text between the lines begin and end (both kept) replaced by
// body. Both markers must be present, once each, begin first.
func Replace(doc []byte, begin, end string, body []byte) ([]byte, error) {
	b := bytes.Index(doc, []byte(begin))
	e := bytes.Index(doc, []byte(end))
	switch {
	case b < 0 || e < 0:
		return nil, fmt.Errorf("the markers %q and %q are not both in the document", begin, end)
	case bytes.Count(doc, []byte(begin)) != 1 || bytes.Count(doc, []byte(end)) != 1:
		return nil, fmt.Errorf("the markers %q and %q must each appear once", begin, end)
	case e < b:
		return nil, fmt.Errorf("the marker %q comes before %q", end, begin)
	}
	bodyStart := b + len(begin)
	if i := bytes.IndexByte(doc[bodyStart:], '\n'); i >= 0 && bodyStart+i < e {
		bodyStart += i + 1
	}
	out := append([]byte(nil), doc[:bodyStart]...)
	out = append(out, body...)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, doc[e:]...), nil
}
