package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServeDashboardUsage: the dashboard's token comes from a file or the environment,
// once, and only with a dashboard.
func TestServeDashboardUsage(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "short", []byte("abc\n"))
	writeFile(t, dir, "empty", []byte("\n"))
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"from-the-environment-0123", []string{"--dashboard-token-file", "short"}, "--dashboard-token-file and WASMFLEET_DASHBOARD_TOKEN both give"},
		{"from-the-environment-0123", []string{"--http", ""}, "a dashboard token is given but --http is empty"},
		{"", []string{"--dashboard-token-file", "empty"}, "--dashboard-token-file empty is empty"},
		{"", []string{"--dashboard-token", "x"}, "flag provided but not defined: -dashboard-token"},
	} {
		t.Setenv(dashboardTokenEnv, tc.env)
		args := append([]string{"serve", "--rollout-key", "k"}, tc.args...)
		code, _, errs := wf(t, dir, args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("wasmfleet %s: exit %d, %q; want exit 1 and %q", strings.Join(args, " "), code, errs, tc.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeDashboard runs `wasmfleet serve` with its dashboard on a free port and the token
// from a file: the URL is logged, the pages answer (the releases from the bucket), the token
// logs in, and serve stops at once on its signal although a browser holds an event stream
// open.
func TestServeDashboard(t *testing.T) {
	dir, mq, _ := cliWorld(t)
	t.Setenv(dashboardTokenEnv, "")
	const token = "serve-test-operator-token"
	writeFile(t, dir, "token", []byte(token+"\n"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--rollout-key", filepath.Join(dir, "rollout.key"), "--trust", filepath.Join(dir, "root.json"),
			"--broker", mq.URL(), "--http", "127.0.0.1:0", "--dashboard-token-file", filepath.Join(dir, "token"), "--sync-idle", "200ms"},
			strings.NewReader(""), &out, &errs)
	}()
	var base string
	deadline := time.Now().Add(30 * time.Second)
	for base == "" {
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			var line struct {
				Message  string `json:"message"`
				URL      string `json:"url"`
				ReadOnly bool   `json:"read_only"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "dashboard listening" {
				if line.ReadOnly {
					t.Fatalf("the dashboard is read-only with a token file: %s", sc.Text())
				}
				base = strings.TrimSuffix(line.URL, "/")
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before its dashboard listened:\n%s%s", code, out.String(), errs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"dashboard listening\" line in 30s:\n%s%s", out.String(), errs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("dashboard URL %q", base)
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if body := get("/"); !strings.Contains(body, "<title>Overview · wasmfleet</title>") {
		t.Fatalf("overview:\n%s", body)
	}
	if body := get("/releases"); !strings.Contains(body, `data-release="threshold-alert@1.2.0"`) || !strings.Contains(body, `data-release="threshold-alert@1.3.0"`) {
		t.Fatalf("releases:\n%s", body)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(base+"/login", url.Values{"token": {token}, "name": {"ops"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login with the file's token: %d, %d cookies", resp.StatusCode, len(resp.Cookies()))
	}
	// An open event stream does not hold serve up.
	sreq, _ := http.NewRequest(http.MethodGet, base+"/events", nil)
	stream, err := http.DefaultClient.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve: exit %d\n%s%s", code, out.String(), errs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s of its signal with an event stream open")
	}
	if !strings.Contains(out.String(), "rollout controller stopped") {
		t.Fatalf("serve's log:\n%s", out.String())
	}
}
