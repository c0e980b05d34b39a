package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/dashboard"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/internal/testenv/fleetenv"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// chromiumPath is Debian's chromium, installed by `make deps`.
const chromiumPath = "/usr/bin/chromium"

const (
	group        = "greenhouse"
	browserToken = "browser-test-operator-token-0123"
)

// browser is a headless Chromium driven through the DevTools protocol, with what the pages
// logged: exceptions and console errors (a Content-Security-Policy violation is one).
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no Chromium at %s (make deps installs Debian's chromium): %v", chromiumPath, err)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]), chromedp.ExecPath(chromiumPath), chromedp.WindowSize(1280, 1000))
	if os.Geteuid() == 0 {
		// Chromium's sandbox refuses to run as root; only then is it turned off.
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, base: base, dir: t.ArtifactDir()}
	if err := chromedp.Do(ctx); err != nil { // the first Do starts the browser: no deadline on it
		t.Fatalf("start Chromium: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			b.problem("exception: " + msg)
		case *log.EventEntryAdded:
			// A page answered 403 or 404 on purpose is no problem; anything else is,
			// a Content-Security-Policy violation first of all.
			if e.Entry.Level == log.EntryLevelError && !strings.Contains(e.Entry.Text, "status of 403") &&
				!strings.Contains(e.Entry.Text, "status of 404") && !strings.Contains(e.Entry.Text, "favicon") {
				b.problem("console: " + e.Entry.Text)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []cdp.Command[cdp.Empty, cdp.Empty]{log.Enable, runtime.Enable} {
		if _, err := chromedp.Call(ctx, c, cdp.Empty{}); err != nil {
			t.Fatalf("%s: %v", c.Method, err)
		}
	}
	return b
}

func (b *browser) problem(s string) {
	b.mu.Lock()
	b.problems = append(b.problems, s)
	b.mu.Unlock()
}

// run runs actions with a deadline, failing the test with what was being done.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.run("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// text is the text content of the element selector names ("" when there is none).
func (b *browser) text(selector string) string {
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, selector))
}

// poll evaluates js (a boolean expression) until it is true. An evaluation that fails (a
// page being replaced) counts as false.
func (b *browser) poll(timeout time.Duration, js string, what func() string) {
	b.t.Helper()
	fleetenv.WaitFor(b.t, timeout, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		return err == nil && ok
	}, what)
}

// submit fills in a form's fields (selector → value), clicks the button selector names, and
// waits for the page the form leads to. The fields are set and the button clicked in the
// page's JavaScript (element.value, element.click()): a click on a submit button submits
// its form as a user's would.
func (b *browser) submit(what, button string, fields ...string) {
	b.t.Helper()
	var js strings.Builder
	js.WriteString("window.__old = true;\n")
	for i := 0; i+1 < len(fields); i += 2 {
		fmt.Fprintf(&js, "document.querySelector(%q).value = %q;\n", fields[i], fields[i+1])
	}
	fmt.Fprintf(&js, "document.querySelector(%q).click();", button)
	eval[chromedp.Void](b, js.String())
	b.poll(10*time.Second, `window.__old === undefined && document.readyState === "complete"`, func() string { return "the page after: " + what })
}

// live waits until the page's event stream is open.
func (b *browser) live() {
	b.t.Helper()
	b.poll(10*time.Second, `document.getElementById("conn").textContent === "live"`, func() string { return "the event stream to open" })
}

// mark leaves a value in the page's window: if it is still there later, the page was not
// reloaded in between.
func (b *browser) mark() { eval[chromedp.Void](b, `window.__probe = "still here"`) }

func (b *browser) notReloaded() {
	b.t.Helper()
	if v := eval[string](b, `window.__probe || "reloaded"`); v != "still here" {
		b.t.Fatalf("the page was reloaded; live updates must come without a reload")
	}
}

// shot saves a screenshot of the whole page under the test's artifact directory.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// noProblems fails the test if a page threw or logged an error.
func (b *browser) noProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		b.t.Fatalf("the pages logged problems:\n  %s", strings.Join(b.problems, "\n  "))
	}
}

// TestBrowser drives the dashboard in a real headless Chromium, against the real Mosquitto
// and versitygw and real agents, with the rollout controller running beside it:
//
//   - the overview shows an agent that connects, without a reload (Server-Sent Events);
//   - a rollout advances wave by wave on its page, without a reload;
//   - abort is refused without the operator token (and from another origin, and without
//     the CSRF token), then works after a login, and goes to the audit log as
//     dashboard:alice;
//   - device ids, module names and error texts with HTML in them render as text, and no
//     script of theirs runs.
//
// Screenshots of each page are saved in t.ArtifactDir() (go test -artifacts keeps them,
// under -outputdir).
func TestBrowser(t *testing.T) {
	w := fleetenv.New(t, nil)
	v1 := w.PublishRelease(fleetenv.ThresholdAlert(t, "1.0.0"))
	v11 := w.PublishRelease(fleetenv.ThresholdAlert(t, "1.1.0"))
	v12 := w.PublishRelease(fleetenv.ThresholdAlert(t, "1.2.0"))
	srv, _ := w.RunController(w.ControllerConfig("ctl-dash"))
	d, err := dashboard.New(dashboard.Config{Server: srv, Bucket: w.Pub, Token: browserToken,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(d)
	t.Cleanup(hs.Close)
	b := newBrowser(t, hs.URL)
	ctl := srv.Controller()
	t.Logf("screenshots in %s", b.dir)

	// An agent appears on the overview without a reload.
	b.open("/")
	b.poll(5*time.Second, `!!document.getElementById("nodevices")`, func() string { return "an empty overview" })
	b.live()
	b.mark()
	w.StartAgent(w.AgentConfig("pi-1", nil, group))
	b.poll(20*time.Second, `!!document.querySelector('#recent tr[data-device="pi-1"]') && document.getElementById("online").textContent === "1"`,
		func() string { return "pi-1 online on the overview; it shows " + b.text("#live") })
	b.notReloaded()
	b.shot("overview-first-device")

	// Five more; threshold-alert 1.0.0 to all of them.
	devices := []string{"pi-1"}
	for i := 2; i <= 6; i++ {
		devices = append(devices, fmt.Sprintf("pi-%d", i))
		w.StartAgent(w.AgentConfig(devices[i-1], nil, group))
	}
	readings(t, w, devices)
	if _, err := ctl.Start(context.Background(), rollout.Spec{ID: "seed", Release: v1, Group: group, Waves: []float64{100},
		MinDevices: 1, Timeout: time.Minute, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctl, "seed", rollout.Completed, 60*time.Second)
	waitRun(t, srv, devices, v1.Version, 30*time.Second)

	// 1.1.0 over it in three waves, watched on its page.
	waves := []float64{34, 67, 100}
	id := fleetenv.PickRolloutID(t, "wave", devices, waves, []int{2, 4, 6})
	b.open("/rollouts")
	b.live()
	b.mark()
	if _, err := ctl.Start(context.Background(), rollout.Spec{ID: id, Release: v11, Previous: &v1, Group: group, Waves: waves,
		Soak: 3 * time.Second, MaxFailure: 0, MinDevices: 1, Timeout: time.Minute, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	b.poll(10*time.Second, fmt.Sprintf(`!!document.querySelector('tr[data-rollout=%q]')`, id), func() string { return "the rollout in the list" })
	b.notReloaded()
	b.shot("rollouts")
	b.open("/rollouts/" + id)
	b.live()
	b.mark()
	var seen []string // the waves' states, each time they changed
	deadline := time.Now().Add(90 * time.Second)
	for {
		states := eval[[]string](b, `Array.from(document.querySelectorAll("tr[data-wave]")).map(r => r.dataset.state)`)
		s := strings.Join(states, ",")
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
			if cur := slices.IndexFunc(states, func(s string) bool { return s != "passed" }); cur >= 0 && !strings.HasSuffix(s, "completed") {
				b.shot(fmt.Sprintf("rollout-wave-%d-%s", cur+1, states[cur]))
			}
		}
		if s == "passed,passed,completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rollout's page never showed it completed; it showed, in turn:\n  %s", strings.Join(seen, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.notReloaded()
	t.Logf("the rollout's page showed, in turn:\n  %s", strings.Join(seen, "\n  "))
	// Each wave was the current one, in order: running or soaking at wave 1, then 2, then 3.
	var order []int
	for _, s := range seen {
		states := strings.Split(s, ",")
		cur := slices.IndexFunc(states, func(s string) bool { return s == "running" || s == "soaking" })
		if cur >= 0 && (len(order) == 0 || order[len(order)-1] != cur+1) {
			order = append(order, cur+1)
		}
	}
	if !slices.Equal(order, []int{1, 2, 3}) {
		t.Fatalf("waves seen open, in order: %v; want 1, 2, 3 (states seen: %v)", order, seen)
	}
	if last := b.text(`tr[data-wave="3"]`); !strings.Contains(last, "6 healthy") {
		t.Errorf("wave 3 of the completed rollout: %q, want 6 healthy", last)
	}
	b.shot("rollout-completed")

	// 1.2.0 in two waves with a long soak: it stays open to be aborted.
	const abortID = "r-abort"
	if _, err := ctl.Start(context.Background(), rollout.Spec{ID: abortID, Release: v12, Previous: &v11, Group: group, Waves: []float64{50, 100},
		Soak: time.Hour, MinDevices: 1, Timeout: time.Minute, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctl, abortID, rollout.Soaking, 60*time.Second)

	// Without a login: refused, and nothing changes.
	b.open("/rollouts/" + abortID)
	b.submit("abort without a login", "#abort", "#reason", "no token")
	if msg := b.text("#message"); !strings.Contains(msg, "need the operator token") {
		t.Fatalf("abort without a login: %q", msg)
	}
	b.shot("abort-refused-without-token")
	if r := get(t, ctl, abortID); r.State != rollout.Soaking {
		t.Fatalf("a refused abort changed the rollout: %s", r.State)
	}

	// Logged in, but the form posted from another origin (another port of 127.0.0.1: same
	// site, so a SameSite cookie alone would not stop it): refused.
	b.submit("follow the login link", "#login-link")
	b.shot("login")
	b.submit("log in", "#submit", "#token", browserToken, "#name", "alice")
	if actor := b.text("#actor"); actor != "dashboard:alice" {
		t.Fatalf("logged in as %q", actor)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/rollouts/%s/abort"><input name="reason" value="csrf"><button id="go">go</button></form>`, hs.URL, abortID)
	}))
	t.Cleanup(evil.Close)
	b.run("open a page on another origin", chromedp.Navigate(evil.URL), chromedp.WaitReady(chromedp.CSS("#go")))
	b.submit("post its form", "#go")
	if msg := b.text("#message"); !strings.Contains(msg, "cross-origin") {
		t.Fatalf("abort posted from another origin: %q", msg)
	}
	if r := get(t, ctl, abortID); r.State != rollout.Soaking {
		t.Fatalf("a cross-origin abort changed the rollout: %s", r.State)
	}

	// Logged in, from its own page: aborted, shown, audited.
	b.open("/rollouts/" + abortID)
	b.live()
	b.submit("abort", "#abort", "#reason", "alarm storm in hall 3")
	b.poll(10*time.Second, `(document.getElementById("state") || {}).textContent.includes("aborted")`,
		func() string { return "the rollout shown aborted; the page says " + b.text("#live") })
	if reason := b.text("#abort-reason"); !strings.Contains(reason, "aborted by dashboard:alice: alarm storm in hall 3") {
		t.Fatalf("abort reason shown: %q", reason)
	}
	r := get(t, ctl, abortID)
	if r.State != rollout.Aborted || r.Last.Actor != "dashboard:alice" || !strings.Contains(r.AbortReason, "alarm storm in hall 3") {
		t.Fatalf("the rollout after the abort: %s by %s: %q", r.State, r.Last.Actor, r.AbortReason)
	}
	if rec := auditRecord(t, w, abortID, r.Last.Step); rec.Actor != "dashboard:alice" || rec.To != rollout.Aborted {
		t.Fatalf("audit record of the abort: %+v", rec)
	}
	// The revert goes out and the devices go back to 1.1.0, shown live.
	b.poll(60*time.Second, `(document.getElementById("revert") || {}).textContent.includes("6 healthy")`,
		func() string { return "every device back on 1.1.0; the page says " + b.text("#live") })
	b.shot("rollout-aborted")

	// HTML from the field renders as text, and none of it runs.
	const (
		scriptModule = `<script>document.title="pwned-module"</script>`
		imgError     = `<img src=x onerror="document.title='pwned-error'">`
		scriptID     = `<script>window.pwned=1</script>`
	)
	hostile(t, w, report.Status{Device: "evil-1", Online: true, Groups: []string{group}, LastError: imgError,
		Modules: []report.ModuleStatus{{Name: scriptModule, Version: "1.0.0", State: report.StateActive, Reason: imgError}}})
	// A device id with markup is not a device id: its status is dropped, and the overview
	// shows why, with the id in it.
	hostileRaw(t, w, "wasmfleet/devices/<script>window.pwned=1<script>/status", `{"device":"x","online":true}`)
	b.open("/")
	b.live()
	b.poll(20*time.Second, `!!document.querySelector('#recent tr[data-device="evil-1"]') && !!document.getElementById("lastmalformed")`,
		func() string { return "evil-1 and the dropped status on the overview" })
	noScriptRan(t, b, "Overview · wasmfleet")
	if !strings.Contains(b.text(`table.versions`), scriptModule) {
		t.Errorf("the module name is not shown as text: %q", b.text("table.versions"))
	}
	if !strings.Contains(b.text("#lastmalformed"), "<script>window.pwned=1<script>") {
		t.Errorf("the dropped status's topic is not shown as text: %q", b.text("#lastmalformed"))
	}
	b.shot("overview")
	b.open("/devices/evil-1")
	noScriptRan(t, b, "Device evil-1 · wasmfleet")
	if got := b.text("#last-error"); got != imgError {
		t.Errorf("last error shown as %q, want the text %q", got, imgError)
	}
	b.shot("device-hostile")
	b.open("/devices/" + url.PathEscape(scriptID))
	noScriptRan(t, b, "Not Found · wasmfleet")
	if got := b.text("#message"); !strings.Contains(got, scriptID) {
		t.Errorf("the unknown device id is not shown as text: %q", got)
	}
	b.shot("device-unknown-script-id")
	b.open("/devices?q=" + url.QueryEscape(scriptID))
	noScriptRan(t, b, "Devices · wasmfleet")
	search := eval[string](b, `document.querySelector('input[name="q"]').value`)
	if search != scriptID || !strings.Contains(b.text("#summary"), "No device matches") {
		t.Errorf("search box %q, summary %q", search, b.text("#summary"))
	}

	// The other pages, for the record.
	b.open("/devices")
	b.poll(5*time.Second, `document.querySelectorAll("#rows tr").length === 7`, func() string { return "7 devices in the table: " + b.text("#summary") })
	b.shot("devices")
	b.open("/devices/pi-1")
	b.poll(5*time.Second, `document.querySelectorAll("table.history tbody tr").length > 0`, func() string { return "pi-1's update history" })
	b.shot("device")
	b.open("/releases")
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		row := b.text(fmt.Sprintf(`tr[data-release="threshold-alert@%s"]`, v))
		for _, want := range []string{"may publish to alerts/{device}/#", "release ✓", "runs on messages on sensors/{device}/temperature"} {
			if !strings.Contains(row, want) {
				t.Errorf("release %s: %q lacks %q", v, row, want)
			}
		}
	}
	b.shot("releases")
	b.open("/")
	b.poll(30*time.Second, `!!document.querySelector('table.rates tr[data-module="threshold-alert"]') && document.querySelector('table.rates tr[data-module="threshold-alert"] td.num').textContent !== "0"`,
		func() string { return "events per second of threshold-alert on the overview: " + b.text("table.rates") })
	b.shot("overview-rates")
	b.noProblems()
}

// noScriptRan checks that the page's title is what the dashboard set and that no script
// but the dashboard's own is in the page or ran.
func noScriptRan(t *testing.T, b *browser, title string) {
	t.Helper()
	type page struct {
		Title   string `json:"title"`
		Pwned   bool   `json:"pwned"`
		Scripts int    `json:"scripts"`
		Images  int    `json:"images"`
	}
	got := eval[page](b, `({title: document.title, pwned: !!window.pwned, scripts: document.scripts.length, images: document.images.length})`)
	if got.Title != title || got.Pwned || got.Scripts != 1 || got.Images != 0 {
		t.Fatalf("a hostile string ran or became markup: %+v (want title %q, one script, no image)", got, title)
	}
}

// hostile publishes a retained status as a device would, through the broker.
func hostile(t *testing.T, w *fleetenv.World, s report.Status) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	hostileRaw(t, w, report.Topics{}.Status(s.Device), string(b))
}

func hostileRaw(t *testing.T, w *fleetenv.World, topic, payload string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(w.MQ.URL()).SetClientID("hostile-" + fmt.Sprint(time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// readings publishes a sensor reading (below the alert threshold) for each device every
// 200ms until the test ends, so that the modules have events to count.
func readings(t *testing.T, w *fleetenv.World, devices []string) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(w.MQ.URL()).SetClientID("sensors"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, d := range devices {
				c.Publish("sensors/"+d+"/temperature", 0, false, `{"value": 20}`)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done; c.Disconnect(100) })
}

func get(t *testing.T, ctl *rollout.Controller, id string) *rollout.Rollout {
	t.Helper()
	r, err := ctl.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func waitState(t *testing.T, ctl *rollout.Controller, id string, state rollout.State, timeout time.Duration) {
	t.Helper()
	var r *rollout.Rollout
	fleetenv.WaitFor(t, timeout, func() bool {
		r = get(t, ctl, id)
		return r.State == state && r.Published
	}, func() string {
		return fmt.Sprintf("rollout %s %s and published; it is %s wave %d", id, state, r.State, r.Wave+1)
	})
}

// waitRun waits until every device reports threshold-alert at version, active.
func waitRun(t *testing.T, srv *controller.Server, devices []string, version string, timeout time.Duration) {
	t.Helper()
	fleetenv.WaitFor(t, timeout, func() bool {
		for _, id := range devices {
			d, ok := srv.Fleet().Registry().Device(id)
			if !ok || !d.Runs("threshold-alert", version) {
				return false
			}
		}
		return true
	}, func() string { return "every device on threshold-alert " + version })
}

func auditRecord(t *testing.T, w *fleetenv.World, id string, step uint64) rollout.AuditRecord {
	t.Helper()
	// The record follows the document of its transition by a write: wait for it.
	var keys []string
	fleetenv.WaitFor(t, 10*time.Second, func() bool {
		all, err := w.Store.List(context.Background(), objects.AuditPrefix)
		if err != nil {
			t.Fatal(err)
		}
		keys = all
		for _, k := range all {
			if rid, s, err := rollout.ParseAuditKey(k); err == nil && rid == id && s == step {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("the audit record of step %d of %s", step, id) })
	for _, k := range keys {
		rid, s, err := rollout.ParseAuditKey(k)
		if err != nil || rid != id || s != step {
			continue
		}
		b, _, err := w.Store.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		var rec rollout.AuditRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	t.Fatalf("no audit record of step %d of %s", step, id)
	return rollout.AuditRecord{}
}
