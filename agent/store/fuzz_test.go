package store

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzState feeds state.json parsing anything: it must never panic, every error must say
// something, and whatever it accepts must be valid and survive a write and a read
// unchanged (so that the store never writes a file it would then move aside).
func FuzzState(f *testing.F) {
	valid, err := json.Marshal(sampleState())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2}`))
	for _, c := range corruptStates {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState(data)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error")
			}
			if !reflect.DeepEqual(st, State{}) {
				t.Fatalf("an error came with a state: %+v", st)
			}
			return
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("parseState accepted an invalid state: %v", err)
		}
		out, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			t.Fatalf("an accepted state does not encode: %v", err)
		}
		again, err := parseState(out)
		if err != nil {
			if errors.Is(err, ErrStateVersion) {
				t.Fatalf("version changed on the way: %v", err)
			}
			t.Fatalf("an accepted state does not read back: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, st) {
			t.Fatalf("state changed on a write and read:\n%+v\n%+v", st, again)
		}
	})
}
