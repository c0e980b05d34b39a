package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// TestStorageFaults puts the fault-injecting proxy of internal/testenv between an agent and
// the real versitygw and spoils the transfers of one update after another: answers cut
// short, S3 errors and refused connections, a body corrupted in transit, and a partial
// download on disk that is not what the object holds. The agent retries and resumes and
// ends with the verified module active, or reports a clear failure and keeps what it ran;
// it never stores or runs a module that does not hash to its signed digest. (The S3 server
// killed in the middle of a download is TestDownloadCutResumes.)
func TestStorageFaults(t *testing.T) {
	const device, group, module = "pi-s3", "s3", "threshold-alert"
	const size = 2 << 20
	f := newFleet(t)
	proxy := testenv.StartProxy(t, f.s3.Endpoint())
	manifest, small := example(t, module, "threshold-alert.wasm")
	cfg := f.agentConfig(device, group)
	cfg.S3.Endpoint = proxy.Addr()
	a, exited := f.startAgentWatched(cfg)
	blobDir := filepath.Join(cfg.DataDir, "store", "blobs", "sha256")

	version := 0
	var running signing.ReleaseRef
	// next publishes a new release and returns it with its keys.
	next := func() (ref signing.ReleaseRef, mkey, rkey string) {
		version++
		ref = f.publishRelease(strings.Replace(manifest, "version: 1.0.0", fmt.Sprintf("version: 1.0.%d", version), 1), padTo(t, small, size))
		mkey, _ = objects.ModuleKey(ref.Name, ref.Version)
		rkey, _ = objects.ReleaseKey(ref.Name, ref.Version)
		return ref, mkey, rkey
	}
	// install points the group at ref and waits until it runs.
	install := func(t *testing.T, ref signing.ReleaseRef) {
		t.Helper()
		f.publishDesired(f.desiredDoc(group, everyone(ref, "r"+ref.Version)))
		f.waitStatus(device, func(s *report.Status) bool {
			m, ok := moduleStatus(s, module)
			return ok && m.Version == ref.Version && m.SHA256 == ref.SHA256
		}, ref.Version+" active")
		running = ref
	}
	// sound checks that every blob in the store hashes to its name, that no download is
	// left over, and that the agent still runs.
	sound := func(t *testing.T) {
		t.Helper()
		ents, err := os.ReadDir(blobDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(blobDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if strings.HasSuffix(e.Name(), ".unverified") {
				t.Errorf("a download was left behind: %s (%d bytes)", e.Name(), len(b))
			} else if hex.EncodeToString(sum[:]) != e.Name() {
				t.Errorf("the store holds a module that does not hash to its name: %s hashes to %x", e.Name(), sum)
			}
		}
		select {
		case <-exited:
			t.Fatal("the agent stopped")
		default:
		}
	}
	requestsFor := func(suffix string, from int) (out []testenv.ProxiedRequest) {
		for _, r := range proxy.Requests()[from:] {
			if strings.HasSuffix(r.Path, suffix) {
				out = append(out, r)
			}
		}
		return out
	}

	first, _, _ := next()
	install(t, first)

	t.Run("answers cut short", func(t *testing.T) {
		ref, mkey, _ := next()
		from := len(proxy.Requests())
		// Three answers in a row break off a quarter of the way into their body.
		proxy.AddFault(testenv.Fault{Kind: testenv.CutBody, Method: http.MethodGet, PathSuffix: mkey, Offset: size / 4, Times: 3})
		start := time.Now()
		install(t, ref)
		sound(t)
		reqs := requestsFor(mkey, from)
		var fetched int64
		for _, r := range reqs {
			fetched += r.Bytes
		}
		if len(reqs) != 4 || reqs[1].Range == "" || reqs[3].Range != fmt.Sprintf("bytes=%d-", 3*size/4) {
			t.Errorf("module requests %v: want one whole and three resumed with a range", reqs)
		}
		if fetched > size+size/10 {
			t.Errorf("fetched %d bytes for a %d-byte module through 3 cuts", fetched, size)
		}
		t.Logf("3 cuts: %d requests, %d bytes for %d (%.3f × size), active after %v", len(reqs), fetched, size,
			float64(fetched)/size, time.Since(start).Round(time.Millisecond))
	})

	t.Run("errors and refused connections", func(t *testing.T) {
		ref, mkey, rkey := next()
		from := len(proxy.Requests())
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>`
		unavailable := fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"+
			"Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		proxy.AddFault(testenv.Fault{Kind: testenv.Respond, PathSuffix: rkey, Times: 2, Response: unavailable})
		proxy.AddFault(testenv.Fault{Kind: testenv.Refuse, PathSuffix: mkey, Times: 2})
		proxy.AddFault(testenv.Fault{Kind: testenv.Respond, PathSuffix: mkey, Times: 1, Response: unavailable})
		start := time.Now()
		install(t, ref)
		sound(t)
		if n := len(requestsFor(rkey, from)); n != 3 {
			t.Errorf("%d release requests, want 3 (two 503s)", n)
		}
		if n := len(requestsFor(mkey, from)); n != 4 {
			t.Errorf("%d module requests, want 4 (two refused, one 503)", n)
		}
		t.Logf("two 503s on the release, two refused connections and a 503 on the module: active after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("body corrupted in transit", func(t *testing.T) {
		ref, mkey, _ := next()
		old := running
		from := len(f.events(device))
		proxy.AddFault(testenv.Fault{Kind: testenv.CorruptBody, PathSuffix: mkey, Offset: size / 2, Times: 1})
		f.publishDesired(f.desiredDoc(group, everyone(ref, "r"+ref.Version)))
		var failed report.Event
		waitFor(t, 30*time.Second, func() bool {
			for _, e := range f.events(device)[from:] {
				if e.Kind == report.EventFailed && e.Version == ref.Version {
					failed = e
					return true
				}
			}
			return false
		}, func() string { return "a failed event" })
		if failed.ErrorKind != "digest" || !strings.Contains(failed.Reason, "verify module") {
			t.Errorf("failed event %+v: want error kind digest from verify module", failed)
		}
		s := f.waitStatus(device, func(s *report.Status) bool {
			m, _ := moduleStatus(s, module)
			return m.Target == ref.Version && strings.Contains(s.LastError, "digest")
		}, "the failure in the status")
		if m, _ := moduleStatus(s, module); m.Version != old.Version || m.SHA256 != old.SHA256 ||
			m.State != report.StateActive && m.State != report.StateHealthCheck {
			t.Errorf("after the corrupted download the status says %+v; want %s still running", m, old.Version)
		}
		if a.store.HasBlob(ref.SHA256) {
			t.Error("the corrupted download was stored")
		}
		sound(t)
		// The failure is for good under this desired state; the next one (the fault
		// spent) installs it.
		install(t, ref)
		sound(t)
		t.Logf("failed: %s (%s); installed under the next desired state", failed.Reason, failed.ErrorKind)
	})

	t.Run("server away", func(t *testing.T) {
		ref, _, _ := next()
		old := running
		from := len(f.events(device))
		f.s3.Kill()
		start := time.Now()
		f.publishDesired(f.desiredDoc(group, everyone(ref, "r"+ref.Version)))
		var failed report.Event
		waitFor(t, 30*time.Second, func() bool {
			for _, e := range f.events(device)[from:] {
				if e.Kind == report.EventFailed && e.Version == ref.Version {
					failed = e
					return true
				}
			}
			return false
		}, func() string { return "a failed event while the server is away" })
		reported := time.Since(start)
		if !strings.Contains(failed.Reason, "giving up after") {
			t.Errorf("failed event %+v: want the attempts it gave up after", failed)
		}
		s := f.waitStatus(device, func(s *report.Status) bool {
			m, _ := moduleStatus(s, module)
			return m.Target == ref.Version && strings.Contains(s.LastError, "giving up after")
		}, "the failure in the status")
		if m, _ := moduleStatus(s, module); m.Version != old.Version {
			t.Errorf("while the server is away the status says %+v; want %s still running", m, old.Version)
		}
		f.s3.Start()
		back := time.Now()
		install(t, ref)
		sound(t)
		t.Logf("server away: reported %v after the desired state (%q); installed %v after the server was back",
			reported.Round(time.Millisecond), failed.Reason, time.Since(back).Round(time.Millisecond))
	})

	t.Run("partial download on disk is not the object", func(t *testing.T) {
		ref, mkey, _ := next()
		from := len(proxy.Requests())
		// What a power cut can leave: half a file whose bytes are not the module's.
		if err := os.WriteFile(filepath.Join(blobDir, ref.SHA256+".unverified"), make([]byte, size/2), 0o600); err != nil {
			t.Fatal(err)
		}
		install(t, ref)
		sound(t)
		reqs := requestsFor(mkey, from)
		if len(reqs) != 2 || reqs[0].Range != fmt.Sprintf("bytes=%d-", size/2) || reqs[1].Range != "" {
			t.Errorf("module requests %v: want the resume, then the whole module again", reqs)
		}
		for _, e := range f.events(device) {
			if e.Kind == report.EventFailed && e.Version == ref.Version {
				t.Errorf("failed event %+v: a bad partial must be fetched again, not refused", e)
			}
		}
	})
}
