package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

func testStore(t *testing.T) (*Store, *testenv.S3) {
	t.Helper()
	s3 := testenv.StartS3(t, nil)
	s3.MakeBucket("fleet")
	st, err := OpenStore(publish.Config{Endpoint: s3.URL(), Bucket: "fleet", Region: s3.Region,
		AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return st, s3
}

// TestStoreConditionalWrites checks the Store's contract against a real versitygw: create
// only when absent, replace only the version read, and a missing key for what it is.
func TestStoreConditionalWrites(t *testing.T) {
	st, _ := testStore(t)
	ctx := context.Background()
	if _, _, err := st.Get(ctx, "rollouts/r1.json"); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("get of a missing key: %v", err)
	}
	v1, err := st.Put(ctx, "rollouts/r1.json", []byte(`{"n":1}`), "")
	if err != nil || v1 == "" {
		t.Fatalf("create: %q, %v", v1, err)
	}
	if _, err := st.Put(ctx, "rollouts/r1.json", []byte(`{"n":"other"}`), ""); !errors.Is(err, rollout.ErrConflict) {
		t.Fatalf("a second create: %v", err)
	}
	data, v, err := st.Get(ctx, "rollouts/r1.json")
	if err != nil || string(data) != `{"n":1}` || v != v1 {
		t.Fatalf("get: %q %q %v; want the first write, version %q", data, v, err, v1)
	}
	v2, err := st.Put(ctx, "rollouts/r1.json", []byte(`{"n":2}`), v1)
	if err != nil || v2 == v1 {
		t.Fatalf("replace version %s: %q, %v", v1, v2, err)
	}
	if _, err := st.Put(ctx, "rollouts/r1.json", []byte(`{"n":"stale"}`), v1); !errors.Is(err, rollout.ErrConflict) {
		t.Fatalf("replace a stale version: %v", err)
	}
	if _, err := st.Put(ctx, "rollouts/none.json", []byte(`{}`), v2); !errors.Is(err, rollout.ErrConflict) {
		t.Fatalf("replace a missing key: %v", err)
	}
	if data, v, _ := st.Get(ctx, "rollouts/r1.json"); string(data) != `{"n":2}` || v != v2 {
		t.Fatalf("after the refused writes: %q %q", data, v)
	}
	st.Put(ctx, "audit/a.json", []byte(`{}`), "")
	keys, err := st.List(ctx, "rollouts/")
	if err != nil || !slices.Equal(keys, []string{"rollouts/r1.json"}) {
		t.Fatalf("list: %v %v", keys, err)
	}
	s := st.Stats()
	if s.Gets != 3 || s.Puts != 6 || s.Lists != 1 || s.Conflicts != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// TestStoreRace: eight writers replace the same version at once; exactly one wins, and
// eight creators of one key: exactly one creates it.
func TestStoreRace(t *testing.T) {
	st, _ := testStore(t)
	ctx := context.Background()
	v0, err := st.Put(ctx, "rollouts/race.json", []byte("v0"), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key, ifVersion string
	}{{"rollouts/race.json", v0}, {"audit/new.json", ""}} {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []string
		for i := range 8 {
			wg.Go(func() {
				data := fmt.Sprintf("writer %d", i)
				_, err := st.Put(ctx, tc.key, []byte(data), tc.ifVersion)
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, data)
					mu.Unlock()
				case !errors.Is(err, rollout.ErrConflict):
					t.Errorf("writer %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("%s: %d writers won: %v", tc.key, len(won), won)
		}
		if data, _, _ := st.Get(ctx, tc.key); string(data) != won[0] {
			t.Fatalf("%s holds %q, the winner wrote %q", tc.key, data, won[0])
		}
	}
}

// TestStoreOperatorCommands runs the operator's side of fleet/rollout (start, pause,
// abort, and a refused resume) on the Store against versitygw: each is one conditional
// write of the document and one create-only audit record.
func TestStoreOperatorCommands(t *testing.T) {
	st, _ := testStore(t)
	ctx := context.Background()
	c, err := rollout.New(rollout.Options{Store: st, ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ref := testRef("1.1.0")
	prev := testRef("1.0.0")
	r, err := c.Start(ctx, rollout.Spec{ID: "r1", Release: ref, Previous: &prev, Group: "g", MinDevices: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, rollout.Spec{ID: "r1", Release: ref, Previous: &prev, Group: "h"}); err == nil {
		t.Fatal("a second rollout with the same id was accepted")
	}
	if r, err = c.Pause(ctx, "r1", "alice"); err != nil || r.State != rollout.Paused {
		t.Fatalf("pause: %+v %v", r, err)
	}
	if r, err = c.Abort(ctx, "r1", "bob", "the dashboard is red"); err != nil || r.State != rollout.Aborted {
		t.Fatalf("abort: %+v %v", r, err)
	}
	if _, err := c.Resume(ctx, "r1", "carol"); !errors.Is(err, rollout.ErrState) {
		t.Fatalf("resume an aborted rollout: %v", err)
	}
	got, err := c.Get(ctx, "r1")
	if err != nil || got.AbortReason != "aborted by bob: the dashboard is red" || got.Last.Step != 3 {
		t.Fatalf("document: %+v %v", got, err)
	}
	audit, _ := st.List(ctx, "audit/")
	if len(audit) != 3 {
		t.Fatalf("audit records %v", audit)
	}
}
