package publish

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/signing"
)

// Entry is one release found in the bucket.
type Entry struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// SHA256 and Size are what the release signs for its module.
	SHA256 string `json:"sha256,omitempty"`
	Size   uint64 `json:"size,omitempty"`
	// KeyIDs are the key ids the envelope's signatures name (hints, not verified).
	KeyIDs []string `json:"key_ids,omitempty"`
	// Verified is set when List was given a verifier and the release verified; SignedBy
	// then lists the release keys that were counted.
	Verified bool     `json:"verified,omitempty"`
	SignedBy []string `json:"signed_by,omitempty"`
	// Published is when release.dsse.json was written (the store's Last-Modified).
	Published time.Time `json:"published,omitzero"`
	// ModuleSize is the size of module.wasm as stored, -1 when it is missing.
	ModuleSize int64 `json:"module_size"`
	// Problem says why devices would not install this release, when List can tell: an
	// envelope that does not decode or verify, a missing module, a module of another size.
	Problem string `json:"problem,omitempty"`
	// Manifest is what the release signs for (its capabilities, triggers and limits);
	// nil when the envelope does not decode. Read it only when Verified.
	Manifest *modules.Manifest `json:"-"`
}

// listConcurrency bounds the envelopes List reads at once.
const listConcurrency = 8

// List returns the releases under releases/ (only those of module name, when name is not
// empty), sorted by name and then by semantic version. It reads every release.dsse.json;
// with a verifier it also verifies each (the module is only compared by size, not hashed).
// Objects that are not releases are reported as entries with a Problem, never skipped.
func (b *Bucket) List(ctx context.Context, name string, v *signing.Verifier) ([]Entry, error) {
	prefix := objects.ReleasesPrefix
	if name != "" {
		if _, err := objects.ReleaseKey(name, "x"); err != nil {
			return nil, err
		}
		prefix += name + "/"
	}
	type found struct {
		release, module *minio.ObjectInfo
	}
	dirs := map[string]*found{} // "name/version" -> its objects
	for obj := range b.client.ListObjects(ctx, b.name, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, obj.Err)
		}
		rest := strings.TrimPrefix(obj.Key, objects.ReleasesPrefix)
		parts := strings.Split(rest, "/")
		if len(parts) != 3 || (parts[2] != objects.ReleaseFile && parts[2] != objects.ModuleFile) {
			continue // not part of the layout
		}
		dir := parts[0] + "/" + parts[1]
		f := dirs[dir]
		if f == nil {
			f = &found{}
			dirs[dir] = f
		}
		o := obj
		if parts[2] == objects.ReleaseFile {
			f.release = &o
		} else {
			f.module = &o
		}
	}

	entries := make([]Entry, 0, len(dirs))
	for dir, f := range dirs {
		n, ver, _ := strings.Cut(dir, "/")
		e := Entry{Name: n, Version: ver, ModuleSize: -1}
		if f.module != nil {
			e.ModuleSize = f.module.Size
		}
		if f.release == nil {
			e.Problem = "module.wasm without release.dsse.json (an interrupted publish?)"
		} else {
			e.Published = f.release.LastModified.UTC()
		}
		entries = append(entries, e)
	}

	var wg sync.WaitGroup
	sem := make(chan struct{}, listConcurrency)
	for i := range entries {
		e := &entries[i]
		if e.Problem != "" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			b.describe(ctx, e, v)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	sort.Slice(entries, func(i, j int) bool {
		a, c := entries[i], entries[j]
		if a.Name != c.Name {
			return a.Name < c.Name
		}
		va, ea := modules.ParseVersion(a.Version)
		vc, ec := modules.ParseVersion(c.Version)
		if ea == nil && ec == nil {
			if d := va.Compare(vc); d != 0 {
				return d < 0
			}
		}
		return a.Version < c.Version
	})
	return entries, nil
}

// describe reads e's envelope and fills in what it signs, and its problems.
func (b *Bucket) describe(ctx context.Context, e *Entry, v *signing.Verifier) {
	key, _ := objects.ReleaseKey(e.Name, e.Version)
	data, _, found, err := b.get(ctx, key, signing.MaxEnvelopeSize)
	switch {
	case err != nil:
		e.Problem = err.Error()
		return
	case !found:
		e.Problem = "release.dsse.json vanished while listing"
		return
	}
	r, env, err := signing.InspectRelease(data)
	if err != nil {
		e.Problem = err.Error()
		return
	}
	e.SHA256, e.Size, e.Manifest = r.SHA256, r.Size, r.Manifest
	for _, s := range env.Signatures {
		if s.KeyID != "" {
			e.KeyIDs = append(e.KeyIDs, s.KeyID)
		}
	}
	if r.Manifest.Name != e.Name || r.Manifest.Version != e.Version {
		e.Problem = fmt.Sprintf("the release is %s %s, stored under %s/%s", r.Manifest.Name, r.Manifest.Version, e.Name, e.Version)
		return
	}
	if v != nil {
		vr, err := v.VerifyRelease(data)
		if err != nil {
			e.Problem = err.Error()
			return
		}
		e.Verified, e.SignedBy = true, vr.SignedBy
	}
	switch {
	case e.ModuleSize < 0:
		e.Problem = "module.wasm is missing"
	case uint64(e.ModuleSize) != e.Size:
		e.Problem = fmt.Sprintf("module.wasm is %d bytes, the release signs %d", e.ModuleSize, e.Size)
	}
}
