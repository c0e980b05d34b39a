package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// Reading the bucket's rollouts.
const (
	// pageMaxAge is how old the rollouts a page shows may be.
	pageMaxAge = 2 * time.Second
	// finalMaxAge is how long a finished rollout whose desired state is out is not read
	// again (the controller only re-signs it, every half TTL).
	finalMaxAge = 30 * time.Second
	// maxAudit bounds the audit records a rollout's page reads.
	maxAudit = 1000
)

// rolloutCache keeps the bucket's rollout documents and their audit records. A refresh
// lists rollouts/ and reads the documents that may have changed: every unfinished one,
// finished ones every finalMaxAge. Audit records never change; the ones of a rollout are
// read once each. It is safe for concurrent use; one refresh runs at a time, and callers
// that arrive meanwhile share its result.
type rolloutCache struct {
	store rollout.Store
	now   func() time.Time

	mu      sync.Mutex
	docs    map[string]cachedDoc
	fetched time.Time
	err     error
	sig     string
	// audit: rollout id → step → record; auditKeys: every audit key read or known
	// to belong to another rollout.
	audit     map[string]map[uint64]rollout.AuditRecord
	auditKeys map[string]bool
}

type cachedDoc struct {
	r       *rollout.Rollout
	err     error
	fetched time.Time
}

func newRolloutCache(s rollout.Store, now func() time.Time) *rolloutCache {
	return &rolloutCache{store: s, now: now, docs: map[string]cachedDoc{},
		audit: map[string]map[uint64]rollout.AuditRecord{}, auditKeys: map[string]bool{}}
}

// refresh reads the bucket unless the last read is younger than maxAge, and reports
// whether any rollout changed since the previous refresh.
func (c *rolloutCache) refresh(ctx context.Context, maxAge time.Duration) (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if maxAge > 0 && !c.fetched.IsZero() && now.Sub(c.fetched) < maxAge {
		return false, c.err
	}
	keys, err := c.store.List(ctx, objects.RolloutsPrefix)
	if err != nil {
		c.err = fmt.Errorf("list %s: %w", objects.RolloutsPrefix, err)
		return false, c.err
	}
	seen := map[string]bool{}
	for _, k := range keys {
		id, ok := strings.CutSuffix(strings.TrimPrefix(k, objects.RolloutsPrefix), ".json")
		if !ok || topic.ValidateDeviceID(id) != nil {
			continue
		}
		seen[id] = true
		if old, ok := c.docs[id]; ok && old.r != nil && old.r.State.Final() && old.r.Published && now.Sub(old.fetched) < finalMaxAge {
			continue
		}
		doc := cachedDoc{fetched: now}
		b, _, err := c.store.Get(ctx, k)
		switch {
		case errors.Is(err, rollout.ErrNotFound):
			delete(seen, id)
			continue
		case err != nil:
			if ctx.Err() != nil {
				c.err = fmt.Errorf("read %s: %w", k, err)
				return false, c.err
			}
			doc.err = fmt.Errorf("read %s: %w", k, err)
		default:
			doc.r, doc.err = rollout.Parse(b)
		}
		c.docs[id] = doc
	}
	for id := range c.docs {
		if !seen[id] {
			delete(c.docs, id)
		}
	}
	c.fetched, c.err = now, nil
	sig := c.signature()
	changed = sig != c.sig
	c.sig = sig
	return changed, nil
}

// signature sums up what the pages show of each rollout; c.mu is held.
func (c *rolloutCache) signature() string {
	ids := make([]string, 0, len(c.docs))
	for id := range c.docs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for _, id := range ids {
		d := c.docs[id]
		if d.r == nil {
			fmt.Fprintf(&b, "%s:error:%v;", id, d.err)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%t:%d;", id, d.r.Last.Step, d.r.Published, d.r.Sequence)
	}
	return b.String()
}

// list returns the rollouts (refreshed if older than maxAge), unfinished ones first, then
// the most recently updated, and the documents that could not be read.
func (c *rolloutCache) list(ctx context.Context, maxAge time.Duration) ([]*rollout.Rollout, []error, error) {
	if _, err := c.refresh(ctx, maxAge); err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*rollout.Rollout
	var bad []error
	for _, d := range c.docs {
		if d.r != nil {
			out = append(out, d.r)
		} else {
			bad = append(bad, d.err)
		}
	}
	slices.SortFunc(out, func(a, b *rollout.Rollout) int {
		if a.State.Final() != b.State.Final() {
			if a.State.Final() {
				return 1
			}
			return -1
		}
		if c := b.Updated.Compare(a.Updated); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	slices.SortFunc(bad, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return out, bad, nil
}

// get returns one rollout (nil when the bucket has none of that id). One the cache does
// not know (started since the last read) is looked for in the bucket at once.
func (c *rolloutCache) get(ctx context.Context, id string, maxAge time.Duration) (*rollout.Rollout, error) {
	for _, age := range []time.Duration{maxAge, 0} {
		if _, err := c.refresh(ctx, age); err != nil {
			return nil, err
		}
		c.mu.Lock()
		d, ok := c.docs[id]
		c.mu.Unlock()
		if ok {
			return d.r, d.err
		}
	}
	return nil, nil
}

// invalidate makes the next read go to the bucket.
func (c *rolloutCache) invalidate() {
	c.mu.Lock()
	c.fetched = time.Time{}
	c.mu.Unlock()
}

// auditOf returns r's audit records, by step. It lists audit/ only when r has a step
// whose record it has not read.
func (c *rolloutCache) auditOf(ctx context.Context, r *rollout.Rollout) ([]rollout.AuditRecord, error) {
	c.mu.Lock()
	recs := c.audit[r.ID]
	if recs == nil {
		recs = map[uint64]rollout.AuditRecord{}
		c.audit[r.ID] = recs
	}
	_, have := recs[r.Last.Step]
	c.mu.Unlock()
	if !have {
		if err := c.readAudit(ctx, r.ID, recs); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]rollout.AuditRecord, 0, len(recs))
	for _, a := range recs {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b rollout.AuditRecord) int { return cmp.Compare(a.Step, b.Step) })
	return out, nil
}

func (c *rolloutCache) readAudit(ctx context.Context, id string, recs map[uint64]rollout.AuditRecord) error {
	keys, err := c.store.List(ctx, objects.AuditPrefix)
	if err != nil {
		return fmt.Errorf("list %s: %w", objects.AuditPrefix, err)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c.mu.Lock()
		known := c.auditKeys[k]
		n := len(recs)
		c.mu.Unlock()
		if known {
			continue
		}
		rid, step, err := rollout.ParseAuditKey(k)
		if err != nil || rid != id {
			if err == nil {
				continue // another rollout's: read when its page is shown
			}
			c.mu.Lock()
			c.auditKeys[k] = true
			c.mu.Unlock()
			continue
		}
		if n >= maxAudit {
			break
		}
		b, _, err := c.store.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		var rec rollout.AuditRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Rollout != id || rec.Step != step {
			rec = rollout.AuditRecord{Rollout: id, Transition: rollout.Transition{Step: step, Reason: fmt.Sprintf("(audit record %s does not decode)", k)}}
		}
		c.mu.Lock()
		recs[step] = rec
		c.auditKeys[k] = true
		c.mu.Unlock()
	}
	return nil
}
