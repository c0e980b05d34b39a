package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// fixture is a rollout document in wave 2, published, with a base module and a lease: the
// shape the controller writes most of the time. The fuzz seeds and the malformed cases start
// from it.
func fixture(t testing.TB) *Rollout {
	t.Helper()
	rel, prev, other := ref(testModule, "1.3.0", 0x13), ref(testModule, "1.2.0", 0x12), ref("echo", "0.1.0", 0x01)
	r := &Rollout{
		ID: "r-42", Release: rel, Previous: &prev, Group: testGroup,
		Base:  []signing.ModuleTarget{{Release: other, Rollout: "r-old-echo", WavePercent: 100}},
		Waves: []float64{1, 10, 50, 100}, Soak: modules.Duration(10 * time.Minute), MaxFailure: 0.05, MinDevices: 3,
		Timeout: modules.Duration(30 * time.Minute), State: Running, Wave: 1,
		Sequence: 7, Signed: t0, Published: true, WaveStarted: t0,
		Created: t0.Add(-time.Hour), Updated: t0,
		Last: Transition{Step: 3, Time: t0, From: Soaking, To: Running, Wave: 1, Actor: ActorController, Reason: "soak of wave 1 over",
			Tally: &Tally{Wave: 0, Percent: 1, Expected: 10, Healthy: 10}},
		Owner: "ctl-a", LeaseUntil: t0.Add(30 * time.Second),
	}
	env, err := signing.SignDesired(context.Background(), r.Content(7, t0.Add(24*time.Hour)), signingtest.NewSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	r.Desired = env
	return r
}

func marshal(t testing.TB, r *Rollout) []byte {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRoundTrip(t *testing.T) {
	r := fixture(t)
	b := marshal(t, r)
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if b2 := marshal(t, got); !bytes.Equal(b, b2) {
		t.Errorf("round trip changed the document:\n%s\n%s", b, b2)
	}
	if !bytes.Equal(got.Desired, r.Desired) {
		t.Error("the signed desired state did not survive byte for byte")
	}
	// Durations are written as Go writes them.
	if !bytes.Contains(b, []byte(`"soak": "10m0s"`)) || !bytes.Contains(b, []byte(`"timeout": "30m0s"`)) {
		t.Errorf("durations: %s", b)
	}
}

// malformedCases are rollout documents Parse must refuse: each changes the fixture's JSON
// in one way.
func malformedCases(t testing.TB) []struct {
	name string
	doc  []byte
} {
	base := fixture(t)
	var m map[string]any
	if err := json.Unmarshal(marshal(t, base), &m); err != nil {
		t.Fatal(err)
	}
	other := fixture(t)
	other.Group = "elsewhere"
	otherEnv, _ := signing.SignDesired(context.Background(), other.Content(7, t0.Add(time.Hour)), signingtest.NewSigner(t))
	seq8, _ := signing.SignDesired(context.Background(), base.Content(8, t0.Add(time.Hour)), signingtest.NewSigner(t))
	mod := func(f func(map[string]any)) []byte {
		var c map[string]any
		b, _ := json.Marshal(m)
		json.Unmarshal(b, &c)
		f(c)
		out, _ := json.Marshal(c)
		return out
	}
	sub := func(c map[string]any, k string) map[string]any { return c[k].(map[string]any) }
	cases := []struct {
		name string
		doc  []byte
	}{
		{"not json", []byte("rollout")},
		{"array", []byte("[]")},
		{"trailing data", append(marshal(t, base), []byte("{}")...)},
		{"unknown field", mod(func(c map[string]any) { c["extra"] = 1 })},
		{"too large", append(marshal(t, base), bytes.Repeat([]byte(" "), MaxDocumentSize)...)},
		{"no id", mod(func(c map[string]any) { delete(c, "id") })},
		{"id with a slash", mod(func(c map[string]any) { c["id"] = "r/1" })},
		{"id of dots", mod(func(c map[string]any) { c["id"] = ".." })},
		{"id too long", mod(func(c map[string]any) { c["id"] = strings.Repeat("r", 129) })},
		{"group with a wildcard", mod(func(c map[string]any) { c["group"] = "green+" })},
		{"no group", mod(func(c map[string]any) { c["group"] = "" })},
		{"release without digest", mod(func(c map[string]any) { sub(c, "release")["sha256"] = "" })},
		{"release of size 0", mod(func(c map[string]any) { sub(c, "release")["size"] = 0 })},
		{"release version not semver", mod(func(c map[string]any) { sub(c, "release")["version"] = "latest" })},
		{"previous of another module", mod(func(c map[string]any) { sub(c, "previous")["name"] = "echo" })},
		{"previous is the release", mod(func(c map[string]any) { c["previous"] = c["release"] })},
		{"base holds the release's module", mod(func(c map[string]any) {
			c["base"] = []any{map[string]any{"release": c["release"], "rollout": "x", "wave_percent": 100}}
		})},
		{"base without rollout", mod(func(c map[string]any) { c["base"].([]any)[0].(map[string]any)["rollout"] = "" })},
		{"no waves", mod(func(c map[string]any) { c["waves"] = []any{} })},
		{"waves not increasing", mod(func(c map[string]any) { c["waves"] = []any{10, 10, 100} })},
		{"last wave below 100", mod(func(c map[string]any) { c["waves"] = []any{1, 10, 50} })},
		{"wave of 0%", mod(func(c map[string]any) { c["waves"] = []any{0, 10, 100} })},
		{"wave above 100%", mod(func(c map[string]any) { c["waves"] = []any{1, 101} })},
		{"wave as a string", mod(func(c map[string]any) { c["waves"] = []any{"1", 100} })},
		{"negative soak", mod(func(c map[string]any) { c["soak"] = "-1m" })},
		{"soak not a duration", mod(func(c map[string]any) { c["soak"] = "ten minutes" })},
		{"soak as a number", mod(func(c map[string]any) { c["soak"] = 600 })},
		{"zero timeout", mod(func(c map[string]any) { c["timeout"] = "0s" })},
		{"max failure above 1", mod(func(c map[string]any) { c["max_failure"] = 1.5 })},
		{"max failure negative", mod(func(c map[string]any) { c["max_failure"] = -0.1 })},
		{"min devices negative", mod(func(c map[string]any) { c["min_devices"] = -1 })},
		{"min devices fractional", mod(func(c map[string]any) { c["min_devices"] = 1.5 })},
		{"unknown state", mod(func(c map[string]any) { c["state"] = "exploded"; sub(c, "last")["to"] = "exploded" })},
		{"wave index past the end", mod(func(c map[string]any) { c["wave"] = 4 })},
		{"wave index negative", mod(func(c map[string]any) { c["wave"] = -1 })},
		{"aborted without a reason", mod(func(c map[string]any) { c["state"] = "aborted"; sub(c, "last")["to"] = "aborted" })},
		{"a reason without aborting", mod(func(c map[string]any) { c["abort_reason"] = "why" })},
		{"published without desired", mod(func(c map[string]any) { delete(c, "desired") })},
		{"published without its time", mod(func(c map[string]any) { delete(c, "wave_started") })},
		{"desired not base64", mod(func(c map[string]any) { c["desired"] = "%%%" })},
		{"desired not an envelope", mod(func(c map[string]any) { c["desired"] = []byte(`{"a":1}`) })},
		{"desired for another group", mod(func(c map[string]any) { c["desired"] = otherEnv })},
		{"desired of another sequence", mod(func(c map[string]any) { c["desired"] = seq8 })},
		{"desired without signed time", mod(func(c map[string]any) { delete(c, "signed") })},
		{"no created", mod(func(c map[string]any) { delete(c, "created") })},
		{"created not a time", mod(func(c map[string]any) { c["created"] = "yesterday" })},
		{"soak_until while running", mod(func(c map[string]any) { c["soak_until"] = t0 })},
		{"soaking without soak_until", mod(func(c map[string]any) { c["state"] = "soaking"; sub(c, "last")["to"] = "soaking" })},
		{"owner without lease", mod(func(c map[string]any) { delete(c, "lease_until") })},
		{"owner with a newline", mod(func(c map[string]any) { c["owner"] = "a\nb" })},
		{"last step 0", mod(func(c map[string]any) { sub(c, "last")["step"] = 0 })},
		{"last leads elsewhere", mod(func(c map[string]any) { sub(c, "last")["to"] = "paused" })},
		{"last of another wave", mod(func(c map[string]any) { sub(c, "last")["wave"] = 0 })},
		{"last without actor", mod(func(c map[string]any) { sub(c, "last")["actor"] = "" })},
		{"last from nowhere", mod(func(c map[string]any) { sub(c, "last")["from"] = "limbo" })},
		{"tally negative", mod(func(c map[string]any) { sub(sub(c, "last"), "tally")["failed"] = -1 })},
		{"tally listing too many", mod(func(c map[string]any) {
			var fs []any
			for range MaxListed + 1 {
				fs = append(fs, map[string]any{"device": "d", "reason": "r"})
			}
			sub(sub(c, "last"), "tally")["failures"] = fs
		})},
		{"sequence negative", mod(func(c map[string]any) { c["sequence"] = -1 })},
	}
	return cases
}

func TestParseMalformed(t *testing.T) {
	for _, c := range malformedCases(t) {
		if r, err := Parse(c.doc); err == nil {
			t.Errorf("%s: parsed: %+v", c.name, r)
		} else if testing.Verbose() {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

func TestParseStates(t *testing.T) {
	// Each state in the shape the controller writes it.
	for _, f := range []func(*Rollout){
		func(r *Rollout) {
			r.State, r.Last.To, r.SoakUntil = Soaking, Soaking, t0.Add(time.Minute)
		},
		func(r *Rollout) { r.State, r.Last.To = Paused, Paused },
		func(r *Rollout) { r.State, r.Last.To, r.Wave, r.Last.Wave = Completed, Completed, 3, 3 },
		func(r *Rollout) {
			r.State, r.Last.To, r.AbortReason = Aborted, Aborted, "too many failures"
			r.newContent()
		},
		func(r *Rollout) { r.Owner, r.LeaseUntil = "", time.Time{} },
		func(r *Rollout) { r.Previous = nil; r.Desired = nil; r.Published = false; r.Signed = time.Time{} },
	} {
		r := fixture(t)
		f(r)
		if r.Desired != nil && r.Content(r.Sequence, t0).Modules[1].WavePercent != r.Waves[r.Wave] {
			// the fixture's desired state is of wave 2; states that change the wave drop it
			r.Desired, r.Published, r.Signed, r.WaveStarted = nil, false, time.Time{}, time.Time{}
		}
		if _, err := Parse(marshal(t, r)); err != nil {
			t.Errorf("%s: %v", r.State, err)
		}
	}
}

func TestContent(t *testing.T) {
	r := fixture(t)
	d := r.Content(9, t0)
	if len(d.Modules) != 2 || d.Modules[0].Release.Name != "echo" || d.Modules[1].WavePercent != 10 || *d.Modules[1].Previous != *r.Previous {
		t.Errorf("wave content %+v", d.Modules)
	}
	r.State = Aborted
	d = r.Content(10, t0)
	m := d.Modules[1]
	if m.Release != *r.Previous || !m.Rollback || m.WavePercent != 100 || m.Previous != nil || m.Rollout != r.ID {
		t.Errorf("revert %+v", m)
	}
	// An agent that runs the release goes back: For gives Previous to everybody, with the
	// rollback flag that lets it install the lower version.
	for _, dev := range []string{"dev-0001", "dev-0002", "dev-0003"} {
		got := m.For(dev)
		if got == nil || *got != *r.Previous || !(m.Rollback && *got == m.Release) {
			t.Errorf("%s: For = %v", dev, got)
		}
		if err := signing.CheckRollback(r.Release.Version, *got, true); err != nil {
			t.Errorf("%s: %v", dev, err)
		}
	}
	if err := d.Validate(); err != nil {
		t.Error(err)
	}
	// Changing the copy does not change the rollout.
	d.Modules[0].WavePercent = 1
	if r.Base[0].WavePercent != 100 {
		t.Error("Content shares memory with the rollout")
	}
}

func TestParseWavesAndRatio(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []float64
	}{
		{"1,10,50,100", []float64{1, 10, 50, 100}},
		{"5%, 25%, 100%", []float64{5, 25, 100}},
		{"0.5,100", []float64{0.5, 100}},
		{"100", []float64{100}},
	} {
		got, err := ParseWaves(c.in)
		if err != nil || len(got) != len(c.want) {
			t.Errorf("ParseWaves(%q) = %v, %v", c.in, got, err)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("ParseWaves(%q) = %v", c.in, got)
			}
		}
	}
	for _, bad := range []string{"", "1,,100", "10,5,100", "1,50", "0,100", "1,200", "a,100", "1e2", "-1,100", "NaN,100", "0x10,100"} {
		if got, err := ParseWaves(bad); err == nil {
			t.Errorf("ParseWaves(%q) = %v, want an error", bad, got)
		}
	}
	for in, want := range map[string]float64{"5%": 0.05, "0.05": 0.05, "0": 0, "100%": 1, "1": 1, " 2.5% ": 0.025} {
		if got, err := ParseRatio(in); err != nil || got != want {
			t.Errorf("ParseRatio(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "%", "5 %", "150%", "1.5", "-5%", "five", "1e-2", "Inf"} {
		if got, err := ParseRatio(bad); err == nil {
			t.Errorf("ParseRatio(%q) = %v, want an error", bad, got)
		}
	}
}

func TestAuditKey(t *testing.T) {
	tr := Transition{Step: 12, Time: time.Date(2026, 11, 25, 12, 0, 1, 5, time.FixedZone("x", 3600))}
	k := AuditKey("r-a-b", tr)
	if k != "audit/20261125T110001.000000005Z-r-a-b-000012.json" {
		t.Errorf("AuditKey = %s", k)
	}
	id, step, err := ParseAuditKey(k)
	if err != nil || id != "r-a-b" || step != 12 {
		t.Errorf("ParseAuditKey(%s) = %q, %d, %v", k, id, step, err)
	}
	for _, bad := range []string{"audit/x.json", "rollouts/r.json", "audit/20261125T110001.000000005Z-r-0.json",
		"audit/20261125T110001.000000005Z--000001.json", "audit/20261125T110001.000000005Z-r-1"} {
		if _, _, err := ParseAuditKey(bad); err == nil {
			t.Errorf("ParseAuditKey(%s) succeeded", bad)
		}
	}
}
