package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// querySeeds are queries the table tests use, good and bad.
var querySeeds = []string{
	"", "page=2", "per=100&page=2", "q=hall&group=hall-a&module=threshold-alert%401.1.0&online=yes&sort=seen&order=asc",
	"q=&group=&module=&online=&sort=id&order=asc", "sort=failures", "page=0", "page=abc", "page=%2B2", "per=5",
	"sort=name", "order=up", "online=maybe", "group=a%2Fb", "module=%40", "module=a%40b%40c", "q=%00", "q=%ff",
	"page=1&page=2", "colour=red", "partial=1", "partial=yes", "%zz=1", "q=%3Cscript%3E", "module=%E2%80%AE",
}

// FuzzDeviceQuery: the devices page's query parser never panics; what it accepts is in
// range, and reads back the same from the links the page writes (Encode).
func FuzzDeviceQuery(f *testing.F) {
	for _, s := range querySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseDeviceQuery(raw)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		if q.Page < 1 || q.Page > MaxPage || q.Per < MinPerPage || q.Per > MaxPerPage {
			t.Fatalf("%q: out of range: %+v", raw, q)
		}
		if _, ok := sortKeys[q.Sort]; !ok {
			t.Fatalf("%q: sort %q", raw, q.Sort)
		}
		again, err := parseDeviceQuery(q.Encode())
		if err != nil {
			t.Fatalf("%q: its link %q does not parse: %v", raw, q.Encode(), err)
		}
		q.Partial = false
		if again != q {
			t.Fatalf("%q: %+v, read back from %q as %+v", raw, q, q.Encode(), again)
		}
		if l := localPath("/devices?" + q.Encode()); !strings.HasPrefix(l, "/devices") {
			t.Fatalf("%q: the link %q is not local", raw, l)
		}
	})
}

// FuzzServeHTTP: whatever the method, path, query, headers and form, the dashboard answers
// without panicking and without a server error, and a refused request changes nothing.
func FuzzServeHTTP(f *testing.F) {
	for _, s := range querySeeds {
		f.Add("GET", "/devices", s, "")
	}
	for _, p := range []string{"/", "/releases", "/rollouts", "/rollouts/r1", "/devices/pi-1", "/devices/%3Cx%3E", "/login", "/static/app.js", "/nope"} {
		f.Add("GET", p, "partial=1", "")
	}
	f.Add("POST", "/login", "", "token=x&name=a")
	f.Add("POST", "/login", "", "token=0123456789abcdef-test-token&next=//evil")
	f.Add("POST", "/rollouts/r1/abort", "", "csrf=x&reason=%00")
	f.Add("POST", "/rollouts/r1/pause", "a=b", "csrf=x")
	f.Add("POST", "/logout", "", "csrf=")
	f.Add("PUT", "/rollouts/r1/abort", "", "")
	fx := newFixture(f, testToken)
	fx.status(device("pi-1"))
	fx.newRollout("r1")
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t?#") || strings.ContainsAny(method, " \r\n\t/") ||
			method == "" || path == "/events" { // the stream never ends by itself
			return
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		r, err := http.NewRequest(method, "http://dashboard.test"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		fx.d.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, w.Code, w.Body)
		}
		got, err := fx.srv.Controller().Get(context.Background(), "r1")
		if err != nil || got.Last.Step != 1 {
			t.Fatalf("%s %s changed the rollout without a session: %v %v", method, target, got, err)
		}
	})
}
