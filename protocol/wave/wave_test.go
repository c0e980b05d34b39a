package wave

import (
	"fmt"
	"math"
	"testing"
)

func TestBucketFixed(t *testing.T) {
	// Pinned values: the fleet and every agent version must agree on them forever.
	for _, c := range []struct {
		dev, rollout string
		want         uint32
	}{
		// Computed independently: python3 -c 'import hashlib; print(int.from_bytes(
		// hashlib.sha256(b"device-1\0r1").digest()[:8], "big") % 10000)'
		{"device-1", "r1", 3104},
		{"pi-0042", "2026-11-25-a", 3604},
	} {
		if got := Bucket(c.dev, c.rollout); got != c.want || got >= Buckets {
			t.Errorf("Bucket(%q, %q) = %d", c.dev, c.rollout, got)
		}
	}
	// The separator matters: ("ab","c") and ("a","bc") differ.
	if Bucket("ab", "c") == Bucket("a", "bc") {
		t.Error("separator does not separate")
	}
}

func TestInWave(t *testing.T) {
	const n = 20000
	for _, p := range []float64{0, 1, 10, 25, 50, 100} {
		in := 0
		for i := 0; i < n; i++ {
			if InWave(fmt.Sprintf("dev-%d", i), "rollout-7", p) {
				in++
			}
		}
		got := float64(in) / n * 100
		if math.Abs(got-p) > 1.5 {
			t.Errorf("wave %v%%: %v%% of devices in it", p, got)
		}
	}
	if InWave("d", "r", -5) || InWave("d", "r", math.NaN()) || !InWave("d", "r", 150) {
		t.Error("out-of-range percentages not clamped")
	}
}

func TestWaveOnlyGrows(t *testing.T) {
	for i := 0; i < 2000; i++ {
		d := fmt.Sprintf("dev-%d", i)
		was := false
		for p := 0.0; p <= 100; p += 0.5 {
			in := InWave(d, "r", p)
			if was && !in {
				t.Fatalf("%s left the wave at %v%%", d, p)
			}
			was = in
		}
	}
}
