package store

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/wasmfleet/wasmfleet/signing"
)

// Several goroutines download, store, activate, read and collect at once; run with -race.
// Every digest is in GC's keep set until the module is in the state, as the agent does.
func TestConcurrentUse(t *testing.T) {
	s := open(t, t.TempDir())
	const workers, rounds = 8, 20

	type module struct {
		name string
		data []byte
		ref  signing.ReleaseRef
		env  []byte
	}
	mods := make([]module, workers)
	keep := map[string]bool{}
	for i := range mods {
		m := &mods[i]
		m.name = fmt.Sprintf("mod-%d", i)
		m.data = wasm(2048+i, byte(i))
		m.ref, m.env = release(t, m.name, "1.0.0", m.data)
		keep[m.ref.SHA256] = true
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*4)
	for i := range mods {
		m := mods[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := m.ref.SHA256
			p, _, err := s.Partial(d)
			if err != nil {
				errs <- err
				return
			}
			// Not appendFile: t.Fatal must not be called from another goroutine.
			if err := os.WriteFile(p, m.data, 0o600); err != nil {
				errs <- err
				return
			}
			if err := s.CommitBlob(d); err != nil {
				errs <- err
				return
			}
			if err := s.PutRelease(m.ref, m.env); err != nil {
				errs <- err
				return
			}
			for r := 0; r < rounds; r++ {
				if err := s.Update(func(st *State) error {
					st.Applied["group/all"]++
					st.Modules[m.name] = ModuleState{Active: m.ref, Since: t0, Status: StatusActive}
					return nil
				}); err != nil {
					errs <- err
				}
				if got, err := s.Blob(d); err != nil || !bytes.Equal(got, m.data) {
					errs <- fmt.Errorf("Blob(%s): %v", m.name, err)
				}
				if _, err := s.Release(m.ref); err != nil {
					errs <- err
				}
				st := s.State()
				st.Applied["group/all"] = 0 // a copy: must not race with the store
				if _, err := s.GC(keep); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	st := s.State()
	if got := st.Applied["group/all"]; got != workers*rounds {
		t.Errorf("applied = %d after %d increments: updates were lost", got, workers*rounds)
	}
	if len(st.Modules) != workers {
		t.Errorf("%d modules, want %d", len(st.Modules), workers)
	}
	for _, m := range mods {
		if !s.HasBlob(m.ref.SHA256) {
			t.Errorf("blob of %s is gone", m.name)
		}
	}
}
