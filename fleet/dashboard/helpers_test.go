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
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing/keys"
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

func newTestSigner(t testing.TB) signature.Signer {
	t.Helper()
	priv, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keys.Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
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
		Signers: []signature.Signer{newTestSigner(t)}, ID: "ctl-test", Log: zerolog.Nop()})
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
