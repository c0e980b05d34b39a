package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// rowsOf returns the device ids of a devices table, in order.
func rowsOf(body string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`<tr data-device="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestNew(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "server is required") {
		t.Fatalf("no server: %v", err)
	}
	f := newFixture(t, "")
	if _, err := New(Config{Server: f.srv, Token: "short"}); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("short token: %v", err)
	}
}

// TestDevicesPaging: 120 devices, 50 a page by default; the pager's links and the summary
// say where the page is; a page past the last shows the last.
func TestDevicesPaging(t *testing.T) {
	f := newFixture(t, "")
	for i := range 120 {
		f.status(device(fmt.Sprintf("pi-%03d", i)))
	}
	want := func(from, to int) []string {
		var ids []string
		for i := from; i < to; i++ {
			ids = append(ids, fmt.Sprintf("pi-%03d", i))
		}
		return ids
	}
	for _, tc := range []struct {
		url      string
		from, to int
		summary  string
		links    []string
	}{
		{"/devices", 0, 50, "Showing 1–50 of 120 matching devices (120 known)", []string{`href="/devices?page=2" rel="next"`, `href="/devices?page=3">last`}},
		{"/devices?page=2", 50, 100, "Showing 51–100 of 120", []string{`href="/devices" rel="prev"`, `href="/devices?page=3" rel="next"`}},
		{"/devices?page=3", 100, 120, "Showing 101–120 of 120", []string{`href="/devices?page=2" rel="prev"`, "page 3 of 3"}},
		{"/devices?page=9", 100, 120, "Showing 101–120 of 120", []string{"page 3 of 3"}},
		{"/devices?per=100&page=2", 100, 120, "Showing 101–120 of 120", []string{`href="/devices?per=100" rel="prev"`}},
		{"/devices?per=10&sort=id&order=desc", 110, 120, "Showing 1–10 of 120", []string{`href="/devices?order=desc&amp;page=2&amp;per=10" rel="next"`}},
	} {
		code, body := f.get(tc.url)
		if code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", tc.url, code, body)
		}
		w := want(tc.from, tc.to)
		if strings.Contains(tc.url, "order=desc") {
			slices.Reverse(w)
		}
		if got := rowsOf(body); !slices.Equal(got, w) {
			t.Errorf("%s: rows %v, want %v", tc.url, got, w)
		}
		for _, s := range append(tc.links, tc.summary) {
			if !strings.Contains(body, s) {
				t.Errorf("%s: no %q in the page", tc.url, s)
			}
		}
	}
}

// TestDevicesFilters: group, module, module@version, online, search (any case), and the
// sort orders.
func TestDevicesFilters(t *testing.T) {
	f := newFixture(t, "")
	a := device("Hall-A-1", "hall-a")
	b := device("hall-a-2", "hall-a", "east")
	b.Modules[0].Version, b.Modules[0].Failures = "1.1.0", 7
	c := device("hall-b-1", "hall-b")
	c.Online = false
	c.Modules = append(c.Modules, report.ModuleStatus{Name: "moving-average", Version: "0.2.0", State: report.StateHealthCheck, Failures: 2})
	for _, s := range []report.Status{a, b, c} {
		f.status(s)
	}
	// The last report of hall-a-2 is the newest.
	f.status(b)
	for _, tc := range []struct {
		url  string
		want []string
	}{
		{"/devices", []string{"Hall-A-1", "hall-a-2", "hall-b-1"}},
		{"/devices?group=hall-a", []string{"Hall-A-1", "hall-a-2"}},
		{"/devices?group=east", []string{"hall-a-2"}},
		{"/devices?group=nowhere", nil},
		{"/devices?module=moving-average", []string{"hall-b-1"}},
		{"/devices?module=threshold-alert%401.1.0", []string{"hall-a-2"}},
		{"/devices?module=threshold-alert%401.0.0", []string{"Hall-A-1", "hall-b-1"}},
		{"/devices?online=no", []string{"hall-b-1"}},
		{"/devices?online=yes", []string{"Hall-A-1", "hall-a-2"}},
		{"/devices?q=HALL-A", []string{"Hall-A-1", "hall-a-2"}},
		{"/devices?q=b-1", []string{"hall-b-1"}},
		{"/devices?q=a-&group=hall-a&online=yes&module=threshold-alert", []string{"Hall-A-1", "hall-a-2"}},
		{"/devices?q=&group=&module=&online=&sort=id&order=asc", []string{"Hall-A-1", "hall-a-2", "hall-b-1"}}, // the form, empty
		{"/devices?sort=failures", []string{"hall-a-2", "hall-b-1", "Hall-A-1"}},
		{"/devices?sort=failures&order=asc", []string{"Hall-A-1", "hall-b-1", "hall-a-2"}},
		{"/devices?sort=seen", []string{"hall-a-2", "hall-b-1", "Hall-A-1"}},
		{"/devices?sort=online", []string{"hall-b-1", "Hall-A-1", "hall-a-2"}},
	} {
		code, body := f.get(tc.url)
		if code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", tc.url, code, body)
		}
		if got := rowsOf(body); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.url, got, tc.want)
		}
	}
	// The filter form offers what the devices report, and keeps what was chosen.
	_, body := f.get("/devices?group=hall-a&module=threshold-alert%401.1.0&online=yes")
	for _, s := range []string{"<option selected>hall-a</option>", "<option>east</option>", "<option selected>threshold-alert@1.1.0</option>",
		"<option>moving-average@0.2.0</option>", `<option value="yes" selected>online</option>`} {
		if !strings.Contains(body, s) {
			t.Errorf("the filter form lacks %s", s)
		}
	}
}

// TestMalformedQuery: every malformed parameter is a 400 that names it.
func TestMalformedQuery(t *testing.T) {
	f := newFixture(t, "")
	f.status(device("pi-1"))
	for _, tc := range []struct{ url, want string }{
		{"/devices?page=0", `page "0": want a whole number from 1 to 1000000`},
		{"/devices?page=abc", `page "abc": want a whole number`},
		{"/devices?page=-1", `page "-1"`},
		{"/devices?page=%2B2", `page "+2"`},
		{"/devices?page=99999999999999999999", `page "99999999999999999999"`},
		{"/devices?per=5", `per "5": want a whole number from 10 to 500`},
		{"/devices?per=501", `per "501"`},
		{"/devices?sort=name", `sort "name": want one of agent, arch, failures, id, online, seen`},
		{"/devices?order=up", `order "up": want asc or desc`},
		{"/devices?online=maybe", `online "maybe": want yes or no`},
		{"/devices?group=a%2Fb", `group "a/b" is not a group name`},
		{"/devices?group=.hidden", `group ".hidden" is not a group name`},
		{"/devices?module=%40", `module "@": want NAME or NAME@VERSION`},
		{"/devices?module=a%40", `module "a@": want NAME or NAME@VERSION`},
		{"/devices?module=a%40b%40c", `module "a@b@c"`},
		{"/devices?q=" + strings.Repeat("x", 129), "q: 129 bytes, more than 128"},
		{"/devices?q=%00", "q \"\\x00\": contains a control character"},
		{"/devices?q=%ff", "q: not valid UTF-8"},
		{"/devices?page=1&page=2", `parameter "page" is given 2 times`},
		{"/devices?colour=red", `unknown parameter "colour" (known: q, group, module, online, sort, order, page, per, partial)`},
		{"/devices?partial=yes", `partial "yes": want 1`},
		{"/?page=2", `unknown parameter "page" (this page takes only partial)`},
		{"/releases?x=1", `unknown parameter "x"`},
		{"/rollouts?partial=2", `partial "2": want 1`},
		{"/devices/pi-1?sort=id", `unknown parameter "sort"`},
		{"/events?topics=devices", `unknown parameter "topics" (this URL takes none)`},
		{"/login?next=/&x=1", `unknown parameter "x"`},
		{"/devices?%zz=1", "invalid"},
	} {
		code, body := f.get(tc.url)
		if code != http.StatusBadRequest || !strings.Contains(body, escaped(tc.want)) {
			t.Errorf("%s: %d, want 400 saying %q:\n%s", tc.url, code, tc.want, between(body, `id="message">`, "</p>"))
		}
	}
}

// escaped is s as html/template escapes text.
func escaped(s string) string {
	r := strings.NewReplacer(`"`, "&#34;", "&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&#39;", "+", "&#43;")
	return r.Replace(s)
}

func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return s
	}
	out, _, _ := strings.Cut(rest, to)
	return out
}

// TestEscaping: what comes from the field (module names, errors, reasons, groups) and from
// the URL (an unknown device id, a search) is escaped on every page; a device id with
// markup, which the feed never lets through, is escaped by the templates all the same.
func TestEscaping(t *testing.T) {
	f := newFixture(t, "")
	const (
		script = `<script>alert(1)</script>`
		img    = `<img src=x onerror=alert(2)>`
	)
	s := device("evil-1")
	s.LastError = img
	s.AgentVersion = script
	s.Modules = append(s.Modules, report.ModuleStatus{Name: script, Version: img, State: report.StateFailed, Reason: script})
	f.status(s)
	ev := report.Event{Device: "evil-1", Time: time.Now(), Kind: report.EventFailed, Module: script, Version: "1.0.0", Reason: img, ErrorKind: script}
	b, _ := json.Marshal(ev)
	if err := f.srv.Feed().Handle(report.Topics{}.Events("evil-1"), b); err != nil {
		t.Fatal(err)
	}
	_ = f.srv.Feed().Handle("wasmfleet/devices/"+script+"/status", []byte(`{}`)) // dropped, and shown as dropped
	for _, u := range []string{"/", "/devices", "/devices/evil-1", "/devices?module=" + url.QueryEscape(script),
		"/devices/" + url.PathEscape(script), "/devices?q=" + url.QueryEscape(script)} {
		code, body := f.get(u)
		if code != http.StatusOK && code != http.StatusNotFound {
			t.Fatalf("%s: %d", u, code)
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s: markup from the field is in the page unescaped:\n%s", u, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") && !strings.Contains(body, "&lt;img src=x") {
			t.Errorf("%s: the hostile text is not shown escaped:\n%s", u, body)
		}
	}
	// A device id with markup straight into the templates.
	var buf bytes.Buffer
	if err := f.d.pages["devices"].ExecuteTemplate(&buf, "devicerows", []deviceRow{{ID: script, Groups: []string{img}, Modules: []string{script}}}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "<script>") || strings.Contains(out, "<img") ||
		!strings.Contains(out, `<a href="/devices/%3Cscript%3Ealert%281%29%3C%2Fscript%3E">&lt;script&gt;alert(1)&lt;/script&gt;</a>`) ||
		!strings.Contains(out, `data-device="&lt;script&gt;alert(1)&lt;/script&gt;"`) {
		t.Errorf("a device id with markup:\n%s", out)
	}
	// And the security headers that stop what escaping would have missed.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	f.d.ServeHTTP(w, r)
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", w.Header())
	}
}

// newRollout starts a rollout in the fixture's bucket (running, wave 1, nothing published).
func (f *fixture) newRollout(id string) *rollout.Rollout {
	f.t.Helper()
	ref := signing.ReleaseRef{Name: "threshold-alert", Version: "1.1.0", SHA256: strings.Repeat("ab", 32), Size: 1000}
	prev := signing.ReleaseRef{Name: "threshold-alert", Version: "1.0.0", SHA256: strings.Repeat("cd", 32), Size: 900}
	r, err := f.srv.Controller().Start(context.Background(), rollout.Spec{ID: id, Release: ref, Previous: &prev, Group: "greenhouse",
		Waves: []float64{10, 50, 100}, MinDevices: 1, Actor: "test"})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) rollout(id string) *rollout.Rollout {
	f.t.Helper()
	r, err := f.srv.Controller().Get(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// login logs in and returns the session cookie and its CSRF token.
func (f *fixture) login(name string) (*http.Cookie, string) {
	f.t.Helper()
	w := f.post("/login", url.Values{"token": {testToken}, "name": {name}, "next": {"/rollouts/r1"}}, nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/rollouts/r1" {
		f.t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		f.t.Fatalf("login set %d cookies", len(cookies))
	}
	c := cookies[0]
	if c.Name != sessionCookie || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || len(c.Value) < 40 {
		f.t.Fatalf("session cookie %+v", c)
	}
	r := httptest.NewRequest(http.MethodGet, "/rollouts/r1", nil)
	r.AddCookie(c)
	rec := httptest.NewRecorder()
	f.d.ServeHTTP(rec, r)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		f.t.Fatalf("no CSRF token in the page of a session:\n%s", rec.Body)
	}
	return c, m[1]
}

// TestActionsRefused: without a token configured, without a session, with a wrong or
// missing CSRF token, from another origin, or with a malformed form, nothing changes.
func TestActionsRefused(t *testing.T) {
	t.Run("ReadOnly", func(t *testing.T) {
		f := newFixture(t, "")
		f.newRollout("r1")
		w := f.post("/rollouts/r1/pause", url.Values{"csrf": {"x"}}, nil)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "read-only") {
			t.Fatalf("pause on a read-only dashboard: %d %s", w.Code, w.Body)
		}
		w = f.post("/login", url.Values{"token": {"anything-at-all-long"}}, nil)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "read-only") {
			t.Fatalf("login on a read-only dashboard: %d", w.Code)
		}
		if code, body := f.get("/rollouts/r1"); code != 200 || strings.Contains(body, `id="abort"`) || !strings.Contains(body, "Read-only") {
			t.Fatalf("a read-only rollout page offers actions: %d", code)
		}
		if r := f.rollout("r1"); r.State != rollout.Running {
			t.Fatal(r.State)
		}
	})
	f := newFixture(t, testToken)
	f.newRollout("r1")
	cookie, csrf := f.login("alice")
	for _, tc := range []struct {
		name    string
		target  string
		form    url.Values
		cookies []*http.Cookie
		header  []string
		code    int
		want    string
	}{
		{"NoSession", "/rollouts/r1/abort", url.Values{"csrf": {csrf}}, nil, nil, 403, "need the operator token; log in first"},
		{"UnknownSession", "/rollouts/r1/abort", url.Values{"csrf": {csrf}}, []*http.Cookie{{Name: sessionCookie, Value: "forged"}}, nil, 403, "log in first"},
		{"NoCSRF", "/rollouts/r1/abort", url.Values{}, []*http.Cookie{cookie}, nil, 403, "CSRF token is not your session"},
		{"WrongCSRF", "/rollouts/r1/pause", url.Values{"csrf": {csrf + "x"}}, []*http.Cookie{cookie}, nil, 403, "CSRF token is not your session"},
		{"CrossSite", "/rollouts/r1/abort", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}, []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross-origin"},
		{"SameSiteOtherOrigin", "/rollouts/r1/abort", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}, []string{"Sec-Fetch-Site", "same-site"}, 403, "cross-origin"},
		{"OtherOrigin", "/rollouts/r1/abort", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}, []string{"Origin", "http://evil.example"}, 403, "cross-origin"},
		{"UnknownField", "/rollouts/r1/pause", url.Values{"csrf": {csrf}, "reason": {"x"}}, []*http.Cookie{cookie}, nil, 400, `unknown parameter "reason"`},
		{"QueryOnPost", "/rollouts/r1/pause?x=1", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}, nil, 400, "no query parameters"},
		{"LongReason", "/rollouts/r1/abort", url.Values{"csrf": {csrf}, "reason": {strings.Repeat("x", 1001)}}, []*http.Cookie{cookie}, nil, 400, "reason: 1001 bytes"},
		{"ControlInReason", "/rollouts/r1/abort", url.Values{"csrf": {csrf}, "reason": {"a\x00b"}}, []*http.Cookie{cookie}, nil, 400, "control characters"},
		{"BadAction", "/rollouts/r1/delete", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}, nil, 404, `no action "delete"`},
		{"BadID", "/rollouts/..x/pause", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}, nil, 400, "rollout id"},
		{"NoSuchRollout", "/rollouts/r9/pause", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}, nil, 404, `no rollout "r9"`},
		{"GetIsNoAction", "/rollouts/r1/abort", nil, []*http.Cookie{cookie}, nil, 404, "no such page"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w *httptest.ResponseRecorder
			if tc.form == nil {
				r := httptest.NewRequest(http.MethodGet, tc.target, nil)
				w = httptest.NewRecorder()
				f.d.ServeHTTP(w, r)
			} else {
				w = f.post(tc.target, tc.form, tc.cookies, tc.header...)
			}
			if w.Code != tc.code || !strings.Contains(w.Body.String(), escaped(tc.want)) {
				t.Fatalf("%d, want %d saying %q: %s", w.Code, tc.code, tc.want, between(w.Body.String(), `id="message">`, "</p>"))
			}
			if r := f.rollout("r1"); r.State != rollout.Running || r.Last.Step != 1 {
				t.Fatalf("a refused request changed the rollout: %s step %d", r.State, r.Last.Step)
			}
		})
	}
}

// TestActions: a session pauses, resumes and aborts; each is in the rollout document and
// its audit record as dashboard:NAME; a transition the state does not allow is a 409;
// logging out ends the session.
func TestActions(t *testing.T) {
	f := newFixture(t, testToken)
	f.newRollout("r1")
	cookie, csrf := f.login("alice")
	do := func(action string, form url.Values, code int) *httptest.ResponseRecorder {
		t.Helper()
		form.Set("csrf", csrf)
		w := f.post("/rollouts/r1/"+action, form, []*http.Cookie{cookie}, "Origin", "http://example.com", "Sec-Fetch-Site", "same-origin")
		if w.Code != code {
			t.Fatalf("%s: %d, want %d: %s", action, w.Code, code, between(w.Body.String(), `id="message">`, "</p>"))
		}
		return w
	}
	w := do("pause", url.Values{}, http.StatusSeeOther)
	if w.Header().Get("Location") != "/rollouts/r1" {
		t.Fatalf("redirect to %q", w.Header().Get("Location"))
	}
	if r := f.rollout("r1"); r.State != rollout.Paused || r.Last.Actor != "dashboard:alice" {
		t.Fatalf("after pause: %s by %s", r.State, r.Last.Actor)
	}
	do("pause", url.Values{}, http.StatusSeeOther) // already paused: nothing changes
	do("resume", url.Values{}, http.StatusSeeOther)
	do("abort", url.Values{"reason": {"  alarm storm\n in hall 3 "}}, http.StatusSeeOther)
	r := f.rollout("r1")
	if r.State != rollout.Aborted || r.AbortReason != "aborted by dashboard:alice: alarm storm in hall 3" || r.Last.Step != 4 {
		t.Fatalf("after abort: %s, %q, step %d", r.State, r.AbortReason, r.Last.Step)
	}
	do("resume", url.Values{}, http.StatusConflict)
	keys, _ := f.store.List(context.Background(), objects.AuditPrefix)
	var actors []string
	slices.Sort(keys)
	for _, k := range keys {
		b, _, _ := f.store.Get(context.Background(), k)
		var rec rollout.AuditRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		actors = append(actors, fmt.Sprintf("%s %s", rec.To, rec.Actor))
	}
	if want := []string{"running test", "paused dashboard:alice", "running dashboard:alice", "aborted dashboard:alice"}; !slices.Equal(actors, want) {
		t.Fatalf("audit records %v, want %v", actors, want)
	}
	// The page shows it, with the history.
	_, body := f.get("/rollouts/r1")
	for _, s := range []string{"alarm storm in hall 3", `<td class="actor">dashboard:alice</td>`, "aborted here", "never opened"} {
		if !strings.Contains(body, s) {
			t.Errorf("the rollout's page lacks %q", s)
		}
	}
	// Logging out needs the CSRF token too, and ends the session.
	if w := f.post("/logout", url.Values{"csrf": {"wrong"}}, []*http.Cookie{cookie}); w.Code != http.StatusForbidden {
		t.Fatalf("logout with a wrong CSRF token: %d", w.Code)
	}
	if w := f.post("/logout", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}); w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", w.Code)
	}
	if w := f.post("/rollouts/r1/pause", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}); w.Code != http.StatusForbidden {
		t.Fatalf("an action after logout: %d", w.Code)
	}
}

// TestLogin: a wrong token, a bad name, an open redirect and guessing are refused.
func TestLogin(t *testing.T) {
	f := newFixture(t, testToken)
	for _, tc := range []struct {
		form url.Values
		code int
		want string
	}{
		{url.Values{"token": {"wrong-token-wrong-token"}}, 403, "wrong token"},
		{url.Values{"token": {testToken}, "name": {"<b>eve</b>"}}, 400, "a name is 1 to 64 of"},
		{url.Values{"token": {testToken}, "extra": {"1"}}, 400, `unknown parameter "extra"`},
	} {
		w := f.post("/login", tc.form, nil)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), escaped(tc.want)) {
			t.Errorf("%v: %d, want %d %q", tc.form, w.Code, tc.code, tc.want)
		}
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("%v: a refused login set a cookie", tc.form)
		}
	}
	for next, want := range map[string]string{"/rollouts/x": "/rollouts/x", "//evil.example/": "/", "https://evil.example/": "/",
		"/\\evil.example": "/", "": "/", "javascript:alert(1)": "/", "/devices?q=a": "/devices?q=a"} {
		w := f.post("/login", url.Values{"token": {testToken}, "next": {next}}, nil)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != want {
			t.Errorf("next %q: %d to %q, want %q", next, w.Code, w.Header().Get("Location"), want)
		}
	}
	// Guessing: after loginFailures wrong tokens in a minute, even the right one waits.
	for range loginFailures {
		f.post("/login", url.Values{"token": {"guess-guess-guess-guess"}}, nil)
	}
	if w := f.post("/login", url.Values{"token": {testToken}}, nil); w.Code != http.StatusTooManyRequests {
		t.Fatalf("login after %d wrong tokens: %d", loginFailures, w.Code)
	}
	now := time.Now().Add(loginWindow + time.Second)
	f.d.sessions.now = func() time.Time { return now }
	if w := f.post("/login", url.Values{"token": {testToken}}, nil); w.Code != http.StatusSeeOther {
		t.Fatalf("login a minute later: %d", w.Code)
	}
}

// TestSessionExpires: a session older than SessionLifetime is gone.
func TestSessionExpires(t *testing.T) {
	f := newFixture(t, testToken)
	f.newRollout("r1")
	cookie, csrf := f.login("bob")
	now := time.Now().Add(SessionLifetime + time.Minute)
	f.d.sessions.now = func() time.Time { return now }
	if w := f.post("/rollouts/r1/pause", url.Values{"csrf": {csrf}}, []*http.Cookie{cookie}); w.Code != http.StatusForbidden {
		t.Fatalf("an expired session paused: %d", w.Code)
	}
}

// TestSSE: the stream says "devices" soon after a device reports, and "rollouts" after a
// rollout changes in the bucket; it stops with the client.
func TestSSE(t *testing.T) {
	f := newFixture(t, testToken)
	hs := httptest.NewServer(f.d)
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- e
			}
		}
		close(events)
	}()
	expect := func(want string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case e := <-events:
				if e == want {
					return
				}
			case <-deadline:
				t.Fatalf("no %q event within 5s", want)
			}
		}
	}
	waitFor(t, 5*time.Second, func() bool { return f.d.hub.listeners() == 1 }, "the listener")
	f.status(device("pi-1"))
	expect(topicDevices)
	f.newRollout("r1")
	expect(topicRollouts)
	cancel()
	waitFor(t, 5*time.Second, func() bool { return f.d.hub.listeners() == 0 }, "the listener to go")
	// The loop stops with the last listener.
	waitFor(t, 5*time.Second, func() bool {
		f.d.hub.mu.Lock()
		defer f.d.hub.mu.Unlock()
		return !f.d.hub.running
	}, "the hub's loop to stop")
}

// TestRolloutPages: the list and a rollout's page show the waves with the tallies from
// the audit records and the live one from the devices' reports.
func TestRolloutPages(t *testing.T) {
	f := newFixture(t, testToken)
	n := f.publishedRollout("r1")
	// Devices of the group: all 1.1.0 and active, so those in wave 2 are healthy.
	for i := range 20 {
		s := device(fmt.Sprintf("pi-%02d", i))
		s.Modules[0].Version, s.Modules[0].SHA256 = "1.1.0", ""
		f.status(s)
	}
	inWave := rollout.Evaluate(n, time.Now(), f.srv.Tracker().Devices("greenhouse")).Expected
	code, body := f.get("/rollouts/r1")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	for _, s := range []string{
		`<tr data-wave="1" data-state="passed">`, `<b class="c-healthy">2</b> healthy · <b class="c-failed">1</b> failed`,
		`<tr data-wave="2" data-state="running">`, "(live)", fmt.Sprintf(`<b class="c-healthy">%d</b> healthy`, inWave),
		`<tr data-wave="3" data-state="waiting">`, `data-actions="pause abort"`, "sequence 1, published",
	} {
		if !strings.Contains(body, s) {
			t.Errorf("the rollout's page lacks %s", s)
		}
	}
	_, list := f.get("/rollouts")
	if !strings.Contains(list, `<tr data-rollout="r1">`) || !strings.Contains(list, "wave 2 of 3 (50%)") {
		t.Errorf("the list:\n%s", list)
	}
	_, overview := f.get("/")
	if !strings.Contains(overview, `<tr data-rollout="r1">`) || !strings.Contains(overview, `id="active">1<`) {
		t.Errorf("the overview does not show the active rollout")
	}
	if code, _ := f.get("/rollouts/nope"); code != http.StatusNotFound {
		t.Errorf("an unknown rollout: %d", code)
	}
}

// TestReleaseWords: capabilities, triggers and limits in plain words.
func TestReleaseWords(t *testing.T) {
	caps := capabilityWords(modules.Capabilities{Publish: []string{"alerts/{device}/#"}, KV: &modules.KV{MaxBytes: 64 * modules.KiB}, Clock: true, Random: true, Log: true})
	want := []string{"may publish to alerts/{device}/#", "keeps up to 64 KiB of state", "may read the clock", "may use random numbers", "may write to the device's log"}
	if !slices.Equal(caps, want) {
		t.Errorf("%q", caps)
	}
	if c := capabilityWords(modules.Capabilities{}); len(c) != 1 || !strings.HasPrefix(c[0], "nothing") {
		t.Errorf("%q", c)
	}
	m := &modules.Manifest{Triggers: []modules.Trigger{{MQTT: "sensors/+/t"}, {Every: modules.Duration(30 * time.Second)}}, Output: "out/{device}"}
	if tr := triggerWords(m); !slices.Equal(tr, []string{"runs on messages on sensors/+/t", "runs every 30s", "its output goes to out/{device}"}) {
		t.Errorf("%q", tr)
	}
	if l := limitWords(modules.Limits{MaxPublishes: 1}.WithDefaults()); l != "memory 16 MiB, 100ms per event, 1 publish and 64 KiB of output per event, 1 at a time" {
		t.Errorf("%q", l)
	}
	if s := sizeWords(1000); s != "1000 bytes" {
		t.Errorf("%q", s)
	}
}

// TestRates: counters in successive statuses become events per second, spread over the
// time between them; a counter that goes down starts again from zero; a last will is
// skipped.
func TestRates(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	r := newRates(func() time.Time { return now })
	st := func(inv, fail uint64, version string) controller.Report {
		s := device("pi-1")
		s.Modules[0].Invocations, s.Modules[0].Failures, s.Modules[0].Version = inv, fail, version
		return controller.Report{Device: "pi-1", Status: &s, Received: now}
	}
	r.observe(st(1000, 0, "1.0.0")) // first sight: nothing counted
	if c := r.chart(); len(c) != 0 {
		t.Fatalf("after one status: %+v", c)
	}
	now = now.Add(time.Minute)
	r.observe(st(1600, 60, "1.0.0")) // 600 events and 60 failures in the minute before now
	c := r.chart()
	if len(c) != 1 || c[0].Module != "threshold-alert" || c[0].Events != "10" || c[0].Failures != "1.0" {
		t.Fatalf("chart %+v", c)
	}
	r.observe(controller.Report{Device: "pi-1", Status: &report.Status{Device: "pi-1"}, Received: now}) // a last will
	now = now.Add(time.Minute)
	r.observe(st(120, 0, "1.1.0")) // restarted on a new version: 120 since
	if c := r.chart(); c[0].Events != "2.0" || c[0].Failures != "0" {
		t.Fatalf("after a restart: %+v", c)
	}
	// Long after, nothing is left in the window, but the module is still reported.
	now = now.Add(time.Hour)
	if c := r.chart(); len(c) != 1 || c[0].Events != "0" {
		t.Fatalf("an hour later: %+v", c)
	}
	r.observe(controller.Report{Device: "pi-1", Cleared: true})
	if c := r.chart(); len(c) != 0 {
		t.Fatalf("after the device was cleared: %+v", c)
	}
}

func TestStatic(t *testing.T) {
	f := newFixture(t, "")
	r := httptest.NewRequest(http.MethodGet, "/static/app.js", nil)
	w := httptest.NewRecorder()
	f.d.ServeHTTP(w, r)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") || w.Header().Get("ETag") == "" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	r.Header.Set("If-None-Match", w.Header().Get("ETag"))
	w = httptest.NewRecorder()
	f.d.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified {
		t.Fatalf("with its ETag: %d", w.Code)
	}
	if code, _ := f.get("/static/nope.js"); code != 404 {
		t.Fatalf("unknown asset: %d", code)
	}
	// Everything is embedded: no page refers to another host.
	for _, u := range []string{"/", "/devices", "/releases", "/rollouts", "/login"} {
		_, body := f.get(u)
		if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
			t.Errorf("%s refers to another host", u)
		}
	}
}
