package signing

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// The fuzz targets are seeded from the fixtures the table tests use. Nothing may panic, and
// whatever parses must re-encode to something that parses the same.

func FuzzEnvelope(f *testing.F) {
	fl := newFleet(f)
	f.Add(fl.trustEnv)
	f.Add(fl.signRelease(f, fl.manifest, wasm(100, 1), fl.release[0], fl.release[1]))
	f.Add(fl.signDesired(f, fl.desired(wasm(100, 1), 3), fl.rollout))
	f.Add([]byte(`{"payloadType":"x","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Add([]byte(`{"payloadType":"x","payload":"e30","signatures":[{"sig":"-_8="}]}`))
	f.Add([]byte(`[]`))
	for _, c := range malformedCases(fl.trustEnv) {
		f.Add([]byte(c.env))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnvelope(data)
		if err != nil {
			if KindOf(err) != ErrMalformed {
				t.Fatalf("parse error of kind %v: %v", KindOf(err), err)
			}
			return
		}
		out, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := ParseEnvelope(out)
		if err != nil {
			t.Fatalf("re-encoded envelope does not parse: %v", err)
		}
		if e2.PayloadType != e.PayloadType || !bytes.Equal(e2.Payload, e.Payload) || len(e2.Signatures) != len(e.Signatures) {
			t.Fatal("round trip changed the envelope")
		}
		// Whatever it is, verification must refuse it cleanly or accept it.
		_, _ = fl.v.VerifyRelease(data)
		_, _ = fl.v.VerifyDesired(data, Target{Group: "greenhouse"}, 0)
		_, _ = ParseTrust(data)
		_, _ = fl.trust.Rotate(data, t0)
	})
}

// FuzzReleaseStatement fuzzes the statement parser behind the signature check.
func FuzzReleaseStatement(f *testing.F) {
	fl := newFleet(f)
	st, err := ReleaseStatement(fl.manifest, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", 4096)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(st)
	f.Add(bytes.Replace(st, []byte(StatementTypeV1), []byte(StatementTypeV01), 1))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://wasmfleet.dev/release/v1","predicate":null}`))
	f.Add([]byte(`{"predicate":{"manifest":{"limits":{"memory":"4XB"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRelease(data)
		if err != nil {
			if KindOf(err) == nil {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if r.Manifest.Validate() != nil || r.Size == 0 || len(r.SHA256) != 64 {
			t.Fatalf("accepted an invalid release: %+v", r)
		}
		_ = r.VerifyModule(bytes.NewReader(data))
	})
}

func FuzzDesired(f *testing.F) {
	fl := newFleet(f)
	d := fl.desired(wasm(100, 1), 3)
	prev := d.Modules[0].Release
	prev.Version = "1.0.0"
	d.Modules[0].Previous = &prev
	d.Modules[0].Rollback = true
	env := fl.signDesired(f, d, fl.rollout)
	f.Add(mustPayloadF(f, env))
	f.Add([]byte(`{"target":{"device":"d"},"sequence":1,"expires":"2027-01-01T00:00:00Z","modules":[]}`))
	f.Add([]byte(`{"target":{},"sequence":-1,"expires":"yesterday"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parseDesired(data)
		if err != nil {
			if KindOf(err) == nil {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted an invalid desired state: %v", err)
		}
		for _, m := range d.Modules {
			_ = m.For("device-1")
			_ = CheckRollback("1.0.0", m.Release, m.Rollback)
		}
	})
}

func FuzzTrustFile(f *testing.F) {
	fl := newFleet(f)
	f.Add(mustPayloadF(f, fl.trustEnv))
	f.Add([]byte(`{"version":1,"expires":"2027-01-01T00:00:00Z","keys":{},"roles":{"root":{"keyids":["x"],"threshold":1}}}`))
	f.Add([]byte(`{"version":0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := decodeTrust(&Envelope{PayloadType: TrustPayloadType, Payload: data})
		if err != nil {
			if KindOf(err) == nil {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if err := tr.File.Validate(); err != nil {
			t.Fatalf("accepted an invalid trust file: %v", err)
		}
		_ = tr.CheckExpiry(time.Time{})
		// Signing it must work (the fuzzer cannot make a valid signature itself).
		if _, err := SignTrust(context.Background(), &tr.File, fl.root); err != nil {
			t.Fatalf("cannot sign an accepted trust file: %v", err)
		}
	})
}

func mustPayloadF(f *testing.F, env []byte) []byte {
	e, err := ParseEnvelope(env)
	if err != nil {
		f.Fatal(err)
	}
	return e.Payload
}
