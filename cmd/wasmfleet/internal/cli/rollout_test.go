package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/signing"
)

// TestRolloutUsage: command lines that are wrong exit 1 before anything is read or written.
func TestRolloutUsage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(s3EndpointEnv, "127.0.0.1:1")
	t.Setenv(s3BucketEnv, "fleet")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout"}, "usage: wasmfleet rollout start"},
		{[]string{"rollout", "restart"}, `unknown rollout subcommand "restart"`},
		{[]string{"rollout", "start", "--group", "g"}, "rollout start needs --release NAME@VERSION and --group G"},
		{[]string{"rollout", "start", "--release", "m@1.0.0"}, "needs --release NAME@VERSION and --group G"},
		{[]string{"rollout", "start", "--release", "m", "--group", "g"}, `--release: "m" has no version`},
		{[]string{"rollout", "start", "--release", "m@1.0.0", "--group", "g", "--waves", "10,50"}, "--waves: waves \"10,50\": the last wave is 50%; it must be 100"},
		{[]string{"rollout", "start", "--release", "m@1.0.0", "--group", "g", "--waves", "50,10,100"}, "is not above wave 1"},
		{[]string{"rollout", "start", "--release", "m@1.0.0", "--group", "g", "--max-failure", "lots"}, "--max-failure"},
		{[]string{"rollout", "start", "--release", "m@1.0.0", "--group", "g", "--max-failure", "150%"}, "--max-failure"},
		{[]string{"rollout", "start", "--release", "m@1.0.0", "--group", "g", "--timeout", "0s"}, "--timeout and --wait must be positive"},
		{[]string{"rollout", "start", "--release", "m@1.0.0", "--group", "g", "--previous", "m@0.9.0", "--new"}, "--previous and --new exclude each other"},
		{[]string{"rollout", "start", "--release", "m@1.0.0", "--group", "g", "--previous", "n@0.9.0"}, "is another module than --release"},
		{[]string{"rollout", "status"}, "rollout status needs one rollout ID"},
		{[]string{"rollout", "status", "a", "b"}, "rollout status needs one rollout ID"},
		{[]string{"rollout", "pause"}, "rollout pause needs one rollout ID"},
		{[]string{"rollout", "abort", "r1", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"rollout", "list", "extra"}, "rollout list takes no arguments"},
		{[]string{"serve"}, "serve needs --rollout-key"},
		{[]string{"serve", "--rollout-key", "k", "--lease", "0s"}, "--lease must be positive"},
		{[]string{"serve", "--rollout-key", "k", "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"serve", "--rollout-key", "k"}, "no broker: give --broker URL"},
	} {
		code, _, errs := wf(t, dir, tc.args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("wasmfleet %s: exit %d, %q; want exit 1 and %q", strings.Join(tc.args, " "), code, errs, tc.want)
		}
	}
}

// cliWorld is setup's keys and files with a versitygw (bucket "fleet", the S3 environment
// set) and a Mosquitto, threshold-alert 1.2.0 and 1.3.0 signed and published, and an MQTT
// client playing a device.
func cliWorld(t *testing.T) (dir string, mq *testenv.Mosquitto, device mqtt.Client) {
	t.Helper()
	dir = setup(t)
	s3World(t)
	mq = testenv.StartMosquitto(t, nil)
	t.Setenv(mqttBrokersEnv, "")
	must(t, dir, "sign", "--key", "rel1.key", "--key", "rel2.key", "--manifest", "m.yaml", "m.wasm", "-o", "rel12.json")
	writeFile(t, dir, "m13.yaml", []byte(strings.Replace(testManifest, "1.2.0", "1.3.0", 1)))
	must(t, dir, "sign", "--key", "rel1.key", "--key", "rel2.key", "--manifest", "m13.yaml", "m.wasm", "-o", "rel13.json")
	must(t, dir, "publish", "--trust", "root.json", "rel12.json", "m.wasm")
	must(t, dir, "publish", "rel13.json", "m.wasm")
	o := mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("dev-1").SetCleanSession(true)
	device = mqtt.NewClient(o)
	if tok := device.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { device.Disconnect(100) })
	return dir, mq, device
}

// runServe runs `wasmfleet serve` until the test ends. Paths in args must be absolute: wf
// changes the working directory of the process meanwhile.
func runServe(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var code int
	var out, errs bytes.Buffer
	go func() {
		defer close(done)
		// The dashboard on a free port, not on the default 8080.
		code = Main(ctx, append([]string{"serve", "--http", "127.0.0.1:0"}, args...), strings.NewReader(""), &out, &errs)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if code != 0 {
			t.Errorf("serve: exit %d\n%s%s", code, out.String(), errs.String())
		}
	})
}

// TestRolloutCLI drives `wasmfleet serve` and every `wasmfleet rollout` subcommand with one
// simulated device (an MQTT client publishing the statuses an agent would): refusals, a
// rollout that completes, a second one read over the first's desired state, paused,
// resumed and aborted with a reason.
func TestRolloutCLI(t *testing.T) {
	dir, mq, device := cliWorld(t)
	status := func(modules string) {
		t.Helper()
		publishRetained(t, device, "dev-1", `{"device":"dev-1","online":true,"groups":["g"],"modules":[`+modules+`]}`)
	}
	module := func(version, state, rollout string) string {
		return `{"name":"threshold-alert","version":"` + version + `","state":"` + state + `","rollout":"` + rollout +
			`","invocations":0,"failures":0,"dropped":0,"p50_us":0,"p99_us":0}`
	}
	status("")

	// Refusals before anything is written.
	code, _, errs := wf(t, dir, "rollout", "start", "--release", "threshold-alert@1.2.0", "--group", "g")
	if code != 1 || !strings.Contains(errs, "group g has no desired state (read from the desired state of the group's last rollout in s3)") {
		t.Fatalf("start without a previous release: exit %d, %s", code, errs)
	}
	refusedWith(t, dir, "not-found: threshold-alert@9.9.9 is not published in s3://fleet", "rollout", "start",
		"--release", "threshold-alert@9.9.9", "--group", "g", "--new")
	refusedWith(t, dir, "not-found: ", "rollout", "status", "nothing")
	refusedWith(t, dir, "not-found: ", "rollout", "pause", "nothing")
	if code, _, errs := wf(t, dir, "rollout", "list"); code != 0 || !strings.Contains(errs, "no rollouts in s3://fleet/rollouts/") {
		t.Fatalf("list of none: exit %d, %s", code, errs)
	}
	// The controller takes rollout keys only.
	refusedWith(t, dir, "error: key ", "serve", "--rollout-key", "rel1.key", "--broker", mq.URL())
	refusedWith(t, dir, "error: key ", "serve", "--rollout-key", "stranger.key", "--broker", mq.URL(), "--trust", "root.json")

	// 1.2.0, new to the group.
	out := must(t, dir, "rollout", "start", "--release", "threshold-alert@1.2.0", "--group", "g", "--new", "--id", "first",
		"--waves", "100", "--soak", "0s", "--min-devices", "1", "--actor", "alice")
	if !strings.Contains(out, "started rollout first: threshold-alert 1.2.0 over nothing (new to the group: an abort removes it) in group g") {
		t.Fatalf("start: %s", out)
	}
	refusedWith(t, dir, "rollout: start rollout: rollout first is running in group g; one rollout per group at a time", "rollout", "start",
		"--release", "threshold-alert@1.3.0", "--group", "g", "--previous", "threshold-alert@1.2.0")
	out = must(t, dir, "rollout", "pause", "first", "--actor", "bob")
	if !strings.Contains(out, "rollout first: running -> paused") {
		t.Fatalf("pause: %s", out)
	}
	if out = must(t, dir, "rollout", "pause", "first"); !strings.Contains(out, "rollout first is already paused") {
		t.Fatalf("pause again: %s", out)
	}
	must(t, dir, "rollout", "resume", "first")

	runServe(t, "--rollout-key", filepath.Join(dir, "rollout.key"), "--broker", mq.URL(), "--interval", "200ms", "--sync-idle", "200ms", "--id", "ctl-test")
	// The controller publishes wave 1; the device has not installed it: pending.
	waitCLI(t, dir, func(out string) bool {
		return strings.Contains(out, "1     100%     running (live)  1        0        0       0       1")
	},
		"rollout", "status", "first", "--broker", mq.URL(), "--idle", "100ms")
	status(module("1.2.0", "active", "first"))
	if code, out, errs := wf(t, dir, "rollout", "status", "first", "--watch", "--interval", "100ms"); code != 0 || !strings.Contains(out, "completed") {
		t.Fatalf("status --watch: exit %d\n%s%s", code, out, errs)
	}

	// 1.3.0 over it: the previous release is read from the retained desired state, which
	// the trust file verifies.
	out = must(t, dir, "rollout", "start", "--release", "threshold-alert@1.3.0", "--group", "g", "--id", "second",
		"--waves", "50,100", "--broker", mq.URL(), "--trust", "root.json")
	if !strings.Contains(out, "started rollout second: threshold-alert 1.3.0 over 1.2.0 in group g") {
		t.Fatalf("start over the broker's desired state: %s", out)
	}
	out = must(t, dir, "rollout", "abort", "second", "--reason", "the dashboard is red", "--actor", "carol")
	if !strings.Contains(out, "rollout second: running -> aborted") || !strings.Contains(out, "sends every device of the group back to threshold-alert 1.2.0") ||
		!strings.Contains(out, "reason recorded: aborted by carol: the dashboard is red") {
		t.Fatalf("abort: %s", out)
	}
	code, out, errs = wf(t, dir, "rollout", "status", "second", "--watch", "--interval", "100ms")
	if code != 2 || !strings.Contains(errs, "error: aborted: rollout second: aborted by carol: the dashboard is red") ||
		!strings.Contains(out, "aborted: aborted by carol: the dashboard is red") || !strings.Contains(out, "every device back to 1.2.0 (published)") {
		t.Fatalf("status --watch of the aborted rollout: exit %d\n%s%s", code, out, errs)
	}
	// What the controller published last: 1.2.0 to everybody, as a rollback, signed by the
	// rollout key.
	got := retainedDesired(t, mq, "g")
	trustB := readBack(t, dir, "root.json")
	trust, err := signing.ParseTrust(trustB)
	if err != nil {
		t.Fatal(err)
	}
	d, err := (&signing.Verifier{Trust: trust}).VerifyDesired(got, signing.Target{Group: "g"}, 0)
	if err != nil || len(d.Modules) != 1 || d.Modules[0].Release.Version != "1.2.0" || !d.Modules[0].Rollback || d.Modules[0].WavePercent != 100 {
		t.Fatalf("retained desired state: %+v, %v", d, err)
	}
	out = must(t, dir, "rollout", "list")
	if lines := strings.Split(out, "\n"); len(lines) != 4 ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "first g threshold-alert 1.2.0 - completed 1/1 (100%)") ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[2]), " "), "second g threshold-alert 1.3.0 1.2.0 aborted 1/2 (50%)") {
		t.Fatalf("list:\n%s", out)
	}
	if out = must(t, dir, "rollout", "list", "--json", "--group", "h"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("list --json of an empty group: %s", out)
	}
}

// waitCLI runs the CLI until its output satisfies ok.
func waitCLI(t *testing.T, dir string, ok func(string) bool, args ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, errs := wf(t, dir, args...)
		if code == 0 && ok(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("wasmfleet %s never printed what was expected: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// retainedDesired reads the retained desired state of a group.
func retainedDesired(t *testing.T, mq *testenv.Mosquitto, group string) []byte {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("reader").SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	got := make(chan []byte, 1)
	c.Subscribe("wasmfleet/groups/"+group+"/desired", 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	select {
	case b := <-got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no retained desired state")
	}
	return nil
}
