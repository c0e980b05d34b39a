package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/signing"
)

// Rollout settings of the dev environment besides Config's waves and soak: any failed
// device of a wave aborts (three agents), and one that has said nothing after a minute is
// a failure.
const (
	rolloutMaxFailure = 0.01
	rolloutMinDevices = 1
	rolloutTimeout    = time.Minute
	rolloutActor      = "wasmfleet-dev"
	pollInterval      = 250 * time.Millisecond
)

// example is a handler found in Config.Examples.
type example struct {
	dir      string
	manifest *modules.Manifest
	wasm     []byte
}

// findExamples reads every subdirectory of dir holding a manifest.yaml, in name order. The
// module is NAME.wasm beside it (NAME from the manifest); a directory without it is
// reported in skipped, with what to do.
func findExamples(dir string) (found []example, skipped []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("examples: %w", err)
	}
	for _, ent := range entries {
		if !ent.IsDir() {
			continue
		}
		sub := filepath.Join(dir, ent.Name())
		mb, err := os.ReadFile(filepath.Join(sub, "manifest.yaml"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, nil, fmt.Errorf("examples: %w", err)
		}
		m, err := modules.Parse(mb)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: manifest.yaml: %v", sub, err))
			continue
		}
		wasmPath := filepath.Join(sub, m.Name+".wasm")
		wasm, err := os.ReadFile(wasmPath)
		if errors.Is(err, os.ErrNotExist) {
			hint := "build it first"
			if _, err := os.Stat(filepath.Join(sub, "main_wasip1.go")); err == nil {
				hint = "build it with `make go-modules` (Go only)"
			}
			skipped = append(skipped, fmt.Sprintf("%s: no %s.wasm; %s", sub, m.Name, hint))
			continue
		} else if err != nil {
			return nil, nil, fmt.Errorf("examples: %w", err)
		}
		found = append(found, example{dir: sub, manifest: m, wasm: wasm})
	}
	return found, skipped, nil
}

// publishExample signs ex with the release key and publishes it. A version the bucket
// already holds, with the same module, is left as it is (nothing is written). One holding
// another module (an example rebuilt with another compiler, say) is kept too, and rolled
// out instead: a published version is never replaced.
func (e *Env) publishExample(ctx context.Context, ex example) (signing.ReleaseRef, error) {
	m := ex.manifest
	env, err := signing.SignRelease(ctx, m, bytes.NewReader(ex.wasm), e.keys.release)
	if err != nil {
		return signing.ReleaseRef{}, fmt.Errorf("sign %s %s: %w", m.Name, m.Version, err)
	}
	res, err := e.bucket.Publish(ctx, e.verifier(), env, ex.wasm, publish.Options{})
	switch {
	case err == nil:
		if res.AlreadyPublished() {
			e.log.Debug().Str("release", m.Name+"@"+m.Version).Msg("already published")
		} else {
			e.mu.Lock()
			e.stats.Published++
			e.mu.Unlock()
			e.log.Info().Str("release", m.Name+"@"+m.Version).Str("sha256", res.Release.SHA256[:12]).Msgf("published %s", ex.dir)
		}
		return res.Release.Ref(), nil
	case errors.Is(err, publish.ErrConflict):
		e.log.Warn().Err(err).Str("release", m.Name+"@"+m.Version).
			Msgf("the bucket holds another %s %s than %s; rolling out the published one (raise the version in its manifest to publish yours)", m.Name, m.Version, ex.dir)
		entries, lerr := e.bucket.List(ctx, m.Name, e.verifier())
		if lerr != nil {
			return signing.ReleaseRef{}, lerr
		}
		for _, en := range entries {
			if en.Version == m.Version && en.Problem == "" {
				return signing.ReleaseRef{Name: en.Name, Version: en.Version, SHA256: en.SHA256, Size: en.Size}, nil
			}
		}
		return signing.ReleaseRef{}, err
	}
	return signing.ReleaseRef{}, fmt.Errorf("publish %s %s: %w", m.Name, m.Version, err)
}

// drive publishes the examples and rolls each out to the group, one after the other (a
// group has one desired state, so one rollout at a time), then closes settled.
func (e *Env) drive(ctx context.Context) {
	var refs []signing.ReleaseRef
	if e.cfg.Examples != "" {
		found, skipped, err := findExamples(e.cfg.Examples)
		if err != nil {
			e.log.Error().Err(err).Msg("no example handlers published")
		}
		for _, s := range skipped {
			e.log.Warn().Msg("example skipped: " + s)
		}
		for _, ex := range found {
			ref, err := e.publishExample(ctx, ex)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				e.log.Error().Err(err).Msg("example not published")
				continue
			}
			refs = append(refs, ref)
		}
	}
	for !e.srv.Synced() {
		if !sleep(ctx, pollInterval) {
			return
		}
	}
	for _, ref := range refs {
		if err := e.converge(ctx, ref); err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Error().Err(err).Str("release", ref.Name+"@"+ref.Version).Msg("rollout")
		}
	}
	if len(refs) > 0 {
		e.log.Info().Int("handlers", len(refs)).Str("group", e.cfg.Group).Msg("every example handler is rolled out")
	}
	close(e.settled)
}

// converge makes the group run ref, or a later version of its module: it waits for a
// rollout of the group in progress (this or an earlier run's), then starts one unless the
// group's desired state already has the module at 100%.
func (e *Env) converge(ctx context.Context, ref signing.ReleaseRef) error {
	ctl := e.srv.Controller()
	want, err := modules.ParseVersion(ref.Version)
	if err != nil {
		return err
	}
	for {
		all, err := ctl.List(ctx)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(all, func(r *rollout.Rollout) bool { return r.Group == e.cfg.Group && !r.State.Final() }); i >= 0 {
			r := all[i]
			e.log.Info().Str("rollout", r.ID).Str("release", r.Release.Name+"@"+r.Release.Version).Msg("waiting for the rollout in progress")
			if _, err := e.waitFinal(ctx, r.ID); err != nil {
				return err
			}
			continue
		}
		cur, _, err := controller.LatestDesired(ctx, e.ctlStore, e.cfg.Group, e.verifier())
		if err != nil && !errors.Is(err, controller.ErrNoDesired) {
			return err
		}
		if cur != nil {
			for _, m := range cur.Modules {
				if m.Release.Name != ref.Name || m.WavePercent != 100 {
					continue
				}
				if v, err := modules.ParseVersion(m.Release.Version); err == nil && v.Compare(want) >= 0 {
					e.log.Debug().Str("release", m.Release.Name+"@"+m.Release.Version).Msg("the group runs it already")
					return nil
				}
			}
		}
		r, err := ctl.Start(ctx, rollout.Spec{Release: ref, Group: e.cfg.Group, Current: cur, Waves: e.cfg.Waves,
			Soak: e.cfg.Soak, MaxFailure: rolloutMaxFailure, MinDevices: rolloutMinDevices, Timeout: rolloutTimeout,
			Actor: rolloutActor})
		if err != nil {
			return fmt.Errorf("start the rollout of %s: %w", ref, err)
		}
		e.mu.Lock()
		e.stats.RolloutsStarted++
		e.mu.Unlock()
		ctl.Wake()
		e.log.Info().Str("rollout", r.ID).Str("release", ref.Name+"@"+ref.Version).Str("waves", wavesString(r.Waves)).
			Msg("rollout started")
		final, err := e.waitFinal(ctx, r.ID)
		if err != nil {
			return err
		}
		if final.State == rollout.Aborted {
			e.log.Warn().Str("rollout", r.ID).Str("reason", final.AbortReason).Msg("rollout aborted")
		} else {
			e.log.Info().Str("rollout", r.ID).Str("release", ref.Name+"@"+ref.Version).Msg("rollout completed")
		}
		return nil
	}
}

// waitFinal polls the rollout until it is completed or aborted.
func (e *Env) waitFinal(ctx context.Context, id string) (*rollout.Rollout, error) {
	ctl := e.srv.Controller()
	wave := -1
	for {
		r, err := ctl.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if r.State.Final() {
			return r, nil
		}
		if r.Wave != wave && r.Published {
			wave = r.Wave
			e.log.Info().Str("rollout", id).Str("release", r.Release.Name+"@"+r.Release.Version).
				Msgf("wave %d of %d (%g%%) published", r.Wave+1, len(r.Waves), r.Waves[r.Wave])
		}
		if !sleep(ctx, pollInterval) {
			return nil, ctx.Err()
		}
	}
}

func wavesString(w []float64) string {
	s := make([]string, len(w))
	for i, p := range w {
		s[i] = fmt.Sprintf("%g%%", p)
	}
	return strings.Join(s, ",")
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
