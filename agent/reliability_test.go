package agent

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The reliability suite (docs/RELIABILITY.md): power cuts during updates, broker restarts
// under load, storage faults, a full disk, overload, a soak, and secrets in the output. Each
// test has a short form that `make test` runs and a long one that `make soak` asks for with
// these flags.
var (
	powerCuts = flag.Int("powercuts", 20, "power-cut trials in TestPowerCutDuringUpdate (make soak: 200)")
	soakFor   = flag.Duration("soak", 20*time.Second, "how long TestSoak runs (make soak: 30m)")
	soakEvery = flag.Duration("soak-update", 5*time.Second, "how often TestSoak publishes a new release (make soak: 1m)")
	seedFlag  = flag.Uint64("seed", 0, "seed of the randomized reliability tests; 0 picks one, printed so a run can be repeated")
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
