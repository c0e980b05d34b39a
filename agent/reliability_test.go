package agent

import (
	"bufio"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

// The reliability suite (docs/RELIABILITY.md): power cuts during updates, broker restarts
// under load, storage faults, a full disk, overload, a soak, and secrets in the output. Each
// test has a short form that `make test` runs and a long one that `make soak` asks for with
// these flags.
var (
	powerCuts    = flag.Int("powercuts", 20, "power-cut trials in TestPowerCutDuringUpdate (make soak: 200)")
	soakFor      = flag.Duration("soak", 20*time.Second, "how long TestSoak runs (make soak: 30m)")
	soakEvery    = flag.Duration("soak-update", 5*time.Second, "how often TestSoak publishes a new release (make soak: 1m)")
	brokerKills  = flag.Int("broker-kills", 3, "broker kills in TestBrokerRestartUnderLoad (make soak: 20)")
	overloadFlag = flag.Duration("overload", 3*time.Second, "how long TestOverload overloads the agent (make soak: 60s)")
	seedFlag     = flag.Uint64("seed", 0, "seed of the randomized reliability tests; 0 picks one, printed so a run can be repeated")
)

// testRand returns a seeded random source and logs the seed, so that a failing run can be
// repeated with -seed.
func testRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (repeat with: go test ./agent -run '^%s$' -seed %d)", seed, t.Name(), seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// uniform returns a duration uniformly in [0, d].
func uniform(r *rand.Rand, d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(d) + 1))
}

// durations summarizes a sample: median, 99th percentile and maximum.
type durations []time.Duration

// median is the middle value (0 for none).
func (d durations) median() time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func (d durations) String() string {
	if len(d) == 0 {
		return "none"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p int) time.Duration { return s[(len(s)-1)*p/100].Round(time.Millisecond) }
	return fmt.Sprintf("p50 %v, p99 %v, max %v (n=%d)", q(50), q(99), s[len(s)-1].Round(time.Millisecond), len(s))
}

// logWatch hands the lines of an agent process's log to whoever waits for a message in it:
// the tests that cut the power when the agent says it reached a step.
type logWatch struct {
	mu      sync.Mutex
	waiters map[string]chan time.Time // by message
}

func newLogWatch() *logWatch { return &logWatch{waiters: map[string]chan time.Time{}} }

// onLine is a testenv.ProcessOptions.OnLine.
func (w *logWatch) onLine(line string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for msg, c := range w.waiters {
		if strings.Contains(line, `"message":"`+msg+`"`) {
			select {
			case c <- now:
			default:
			}
		}
	}
}

// expect returns a channel that receives when the log next says msg.
func (w *logWatch) expect(msg string) <-chan time.Time {
	c := make(chan time.Time, 1)
	w.mu.Lock()
	w.waiters[msg] = c
	w.mu.Unlock()
	return c
}

// procSample is one reading of an agent process: resident memory and descriptors from
// /proc, goroutines from its /metrics.
type procSample struct {
	at         time.Time
	rss        int64
	fds        int
	goroutines int
}

func (s procSample) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d fds, %d goroutines", float64(s.rss)/(1<<20), s.fds, s.goroutines)
}

// sampleAgent reads one procSample of an agent process serving /metrics on metricsAddr.
func sampleAgent(p *testenv.Process, metricsAddr string) (procSample, error) {
	s := procSample{at: time.Now()}
	st, err := p.Stats()
	if err != nil {
		return s, err
	}
	s.rss, s.fds = st.RSS, st.FDs
	m, err := readMetrics(metricsAddr)
	if err != nil {
		return s, err
	}
	v, ok := m["go_goroutines"]
	if !ok {
		return s, fmt.Errorf("/metrics has no go_goroutines")
	}
	s.goroutines = int(v)
	return s, nil
}

// readMetrics reads an agent's /metrics at addr: each sample's value by its name (with its
// labels, as written).
func readMetrics(addr string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("read /metrics: %w", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// sampler reads an agent process every interval until stopped.
type sampler struct {
	mu      sync.Mutex
	samples []procSample
	errs    []error
	stop    chan struct{}
	done    chan struct{}
}

func startSampler(p *testenv.Process, metricsAddr string, every time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			smp, err := sampleAgent(p, metricsAddr)
			s.mu.Lock()
			if err != nil {
				s.errs = append(s.errs, err)
			} else {
				s.samples = append(s.samples, smp)
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// halt stops sampling and returns the samples, failing the test if reading failed.
func (s *sampler) halt(t *testing.T) []procSample {
	t.Helper()
	close(s.stop)
	<-s.done
	if len(s.errs) > 0 {
		t.Fatalf("%d samples failed; first: %v", len(s.errs), s.errs[0])
	}
	return s.samples
}

// between returns the samples taken in [from, to).
func between(samples []procSample, from, to time.Time) []procSample {
	var out []procSample
	for _, s := range samples {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// peak is the sample with the most of what key measures.
func peak(samples []procSample, key func(procSample) int64) procSample {
	var p procSample
	for _, s := range samples {
		if key(s) > key(p) {
			p = s
		}
	}
	return p
}

// mean averages what key measures over samples.
func mean(samples []procSample, key func(procSample) int64) float64 {
	if len(samples) == 0 {
		return 0
	}
	var sum int64
	for _, s := range samples {
		sum += key(s)
	}
	return float64(sum) / float64(len(samples))
}

func rssOf(s procSample) int64        { return s.rss }
func fdsOf(s procSample) int64        { return int64(s.fds) }
func goroutinesOf(s procSample) int64 { return int64(s.goroutines) }

// diskUsage counts the files under dir and their bytes, and names its entries.
func diskUsage(t *testing.T, dir string) (files int, bytes int64, entries []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if filepath.Dir(path) == dir {
			entries = append(entries, d.Name())
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files++
			bytes += fi.Size()
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("disk usage of %s: %v", dir, err)
	}
	return files, bytes, entries
}
