package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// memStore is rollout.Store in memory: the handler tests are about the dashboard's own
// logic; the browser test runs against versitygw.
type memStore struct {
	mu   sync.Mutex
	objs map[string]memObj
	n    int
	gets int
}

type memObj struct {
	data    []byte
	version string
}

func newMemStore() *memStore { return &memStore{objs: map[string]memObj{}} }

func (s *memStore) Get(_ context.Context, key string) ([]byte, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	o, ok := s.objs[key]
	if !ok {
		return nil, "", fmt.Errorf("get %s: %w", key, rollout.ErrNotFound)
	}
	return append([]byte(nil), o.data...), o.version, nil
}

func (s *memStore) Put(_ context.Context, key string, data []byte, ifVersion string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[key]
	if (ifVersion == "" && ok) || (ifVersion != "" && (!ok || o.version != ifVersion)) {
		return "", fmt.Errorf("put %s: %w", key, rollout.ErrConflict)
	}
	s.n++
	v := fmt.Sprintf("v%d", s.n)
	s.objs[key] = memObj{data: append([]byte(nil), data...), version: v}
	return v, nil
}

func (s *memStore) List(_ context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// testToken is the operator token of the handler tests.
const testToken = "0123456789abcdef-test-token"

// fixture is a dashboard on a controller.Server that is never connected: devices are
// handed to its Feed as if from the broker, rollouts written to a memStore.
type fixture struct {
	t     testing.TB
	store *memStore
	srv   *controller.Server
	d     *Dashboard
}

func newFixture(t testing.TB, token string) *fixture {
	t.Helper()
	f := &fixture{t: t, store: newMemStore()}
	var err error
	f.srv, err = controller.New(controller.Config{Store: f.store, MQTT: controller.MQTTConfig{Brokers: []string{"tcp://127.0.0.1:1"}},
		Signers: []signature.Signer{signingtest.NewSigner(t)}, ID: "ctl-test", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	f.d, err = New(Config{Server: f.srv, Token: token, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// status hands a device's status to the server as if the broker delivered it.
func (f *fixture) status(s report.Status) {
	f.t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.srv.Feed().Handle(report.Topics{}.Status(s.Device), b); err != nil {
		f.t.Fatal(err)
	}
}

// get serves one request and returns the status and body.
func (f *fixture) get(target string, header ...string) (int, string) {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.d.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

// post serves a form POST with cookies and headers.
func (f *fixture) post(target string, form url.Values, cookies []*http.Cookie, header ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.d.ServeHTTP(w, r)
	return w
}

// device is a plausible status of an online device running threshold-alert.
func device(id string, groups ...string) report.Status {
	if len(groups) == 0 {
		groups = []string{"greenhouse"}
	}
	return report.Status{Device: id, Online: true, Time: time.Unix(1_800_000_000, 0).UTC(), AgentVersion: "0.4.0", Arch: "arm64",
		Engine: "compiler", Groups: groups, Modules: []report.ModuleStatus{{Name: "threshold-alert", Version: "1.0.0",
			State: report.StateActive, Invocations: 10, P50Micros: 120, P99Micros: 900}}}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publishedRollout writes rollout id as the controller would have after its first wave
// passed (2 healthy, 1 failed) and its second (50%) went out: running, published, with the
// audit records of both transitions.
func (f *fixture) publishedRollout(id string) *rollout.Rollout {
	f.t.Helper()
	ref := signing.ReleaseRef{Name: "threshold-alert", Version: "1.1.0", SHA256: strings.Repeat("ab", 32), Size: 1000}
	prev := signing.ReleaseRef{Name: "threshold-alert", Version: "1.0.0", SHA256: strings.Repeat("cd", 32), Size: 900}
	r, err := f.srv.Controller().Start(context.Background(), rollout.Spec{ID: id, Release: ref, Previous: &prev, Group: "greenhouse",
		Waves: []float64{10, 50, 100}, MinDevices: 1, Actor: "test"})
	if err != nil {
		f.t.Fatal(err)
	}
	now := time.Now().UTC()
	put := func(n *rollout.Rollout) {
		key, _ := objects.RolloutKey(n.ID)
		_, ver, err := f.store.Get(context.Background(), key)
		if err != nil {
			f.t.Fatal(err)
		}
		b, err := n.Marshal()
		if err != nil {
			f.t.Fatal(err)
		}
		if _, err := f.store.Put(context.Background(), key, b, ver); err != nil {
			f.t.Fatal(err)
		}
		rec, _ := json.Marshal(rollout.AuditRecord{Rollout: n.ID, Group: n.Group, Release: "threshold-alert@1.1.0", Transition: n.Last})
		if _, err := f.store.Put(context.Background(), rollout.AuditKey(n.ID, n.Last), rec, ""); err != nil {
			f.t.Fatal(err)
		}
	}
	n := *r
	n.State, n.Wave, n.SoakUntil = rollout.Soaking, 0, now.Add(time.Minute)
	n.Last = rollout.Transition{Step: 2, Time: now, From: rollout.Running, To: rollout.Soaking, Wave: 0, Actor: "controller",
		Reason: "wave 1 passed", Tally: &rollout.Tally{Wave: 0, Percent: 10, Expected: 3, Healthy: 2, Failed: 1}}
	put(&n)
	n.State, n.Wave, n.SoakUntil, n.WaveStarted, n.Published = rollout.Running, 1, time.Time{}, now, true
	n.Sequence, n.Signed = 1, now
	n.Desired, err = signing.SignDesired(context.Background(), n.Content(n.Sequence, now.Add(time.Hour)), signingtest.NewSigner(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	n.Last = rollout.Transition{Step: 3, Time: now, From: rollout.Soaking, To: rollout.Running, Wave: 1, Actor: "controller", Reason: "wave 2 opens"}
	put(&n)
	return &n
}
