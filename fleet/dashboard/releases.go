package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
)

// releasesMaxAge is how long the releases read from the bucket are shown before they are
// read again.
const releasesMaxAge = 15 * time.Second

// releaseCache keeps the bucket's releases, verified with its trust file.
type releaseCache struct {
	bucket *publish.Bucket
	now    func() time.Time

	mu      sync.Mutex
	entries []publish.Entry
	trust   *signing.Trust
	trustEr string
	fetched time.Time
	err     error
}

func newReleaseCache(b *publish.Bucket, now func() time.Time) *releaseCache {
	return &releaseCache{bucket: b, now: now}
}

// get returns the releases, read again when older than releasesMaxAge, with the trust file
// they were verified with (nil: the bucket has none that verifies; why is in trustProblem).
func (c *releaseCache) get(ctx context.Context) (entries []publish.Entry, trust *signing.Trust, trustProblem string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bucket == nil {
		return nil, nil, "", errors.New("the dashboard was started without a bucket")
	}
	if !c.fetched.IsZero() && c.now().Sub(c.fetched) < releasesMaxAge {
		return c.entries, c.trust, c.trustEr, c.err
	}
	t, err := c.bucket.Trust(ctx)
	c.trust, c.trustEr = t, ""
	if err != nil {
		c.trust, c.trustEr = nil, err.Error()
	}
	var v *signing.Verifier
	if c.trust != nil {
		v = &signing.Verifier{Trust: c.trust}
	}
	es, err := c.bucket.List(ctx, "", v)
	if err != nil {
		c.err = fmt.Errorf("list the releases: %w", err)
		// Keep showing what was read before, with the error.
		return c.entries, c.trust, c.trustEr, c.err
	}
	c.entries, c.err, c.fetched = es, nil, c.now()
	return c.entries, c.trust, c.trustEr, nil
}

// releaseView is one release on the releases page.
type releaseView struct {
	publish.Entry
	Signers      []signerView
	Capabilities []string
	Triggers     []string
	Limits       string
}

type signerView struct {
	KeyID string
	Roles string
	// Counted: the signature verified and counted toward the release role's threshold.
	Counted bool
}

// releasesData is the releases page's.
type releasesData struct {
	Releases     []releaseView
	TrustVersion uint64
	TrustProblem string
	Err          string
}

func (d *Dashboard) releasesPage(w http.ResponseWriter, r *http.Request) {
	partial, err := parsePartial(r.URL.RawQuery)
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	entries, trust, trustProblem, err := d.releases.get(r.Context())
	data := releasesData{TrustProblem: trustProblem}
	if err != nil {
		data.Err = err.Error()
	}
	if trust != nil {
		data.TrustVersion = trust.Version()
	}
	for _, e := range entries {
		data.Releases = append(data.Releases, viewRelease(e, trust))
	}
	d.render(w, r, http.StatusOK, "releases", &page{Title: "Releases", Nav: "releases", Data: data}, partial)
}

func viewRelease(e publish.Entry, trust *signing.Trust) releaseView {
	v := releaseView{Entry: e}
	for _, id := range e.KeyIDs {
		s := signerView{KeyID: id, Roles: "not in the trust file"}
		if trust != nil {
			if roles := trust.KeyRole(id); len(roles) > 0 {
				s.Roles = strings.Join(roles, ", ")
			}
		} else {
			s.Roles = "unknown (no trust file)"
		}
		for _, c := range e.SignedBy {
			if c == id {
				s.Counted = true
			}
		}
		v.Signers = append(v.Signers, s)
	}
	if m := e.Manifest; m != nil {
		v.Capabilities = capabilityWords(m.Capabilities)
		v.Triggers = triggerWords(m)
		v.Limits = limitWords(m.Limits.WithDefaults())
	}
	return v
}

// capabilityWords says what a module may do, one sentence each.
func capabilityWords(c modules.Capabilities) []string {
	var out []string
	for _, p := range c.Publish {
		out = append(out, "may publish to "+p)
	}
	if c.KV != nil {
		out = append(out, "keeps up to "+sizeWords(c.KV.MaxBytes)+" of state")
	}
	if c.Clock {
		out = append(out, "may read the clock")
	}
	if c.Random {
		out = append(out, "may use random numbers")
	}
	if c.Log {
		out = append(out, "may write to the device's log")
	}
	if len(out) == 0 {
		out = append(out, "nothing: it only answers the events it is given")
	}
	return out
}

func triggerWords(m *modules.Manifest) []string {
	var out []string
	for _, t := range m.Triggers {
		switch {
		case t.MQTT != "":
			out = append(out, "runs on messages on "+t.MQTT)
		case t.Every > 0:
			out = append(out, "runs every "+t.Every.String())
		}
	}
	if m.Output != "" {
		out = append(out, "its output goes to "+m.Output)
	}
	return out
}

func limitWords(l modules.Limits) string {
	publishes := "publishes"
	if l.MaxPublishes == 1 {
		publishes = "publish"
	}
	return fmt.Sprintf("memory %s, %s per event, %d %s and %s of output per event, %d at a time",
		sizeWords(l.Memory), l.Timeout, l.MaxPublishes, publishes, sizeWords(l.MaxOutput), l.Concurrency)
}

// sizeWords writes 65536 as "64 KiB".
func sizeWords(s modules.Size) string {
	str := s.String()
	for _, u := range []string{"GiB", "MiB", "KiB"} {
		if n, ok := strings.CutSuffix(str, u); ok {
			return n + " " + u
		}
	}
	return str + " bytes"
}
