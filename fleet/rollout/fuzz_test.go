package rollout

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParse is seeded with the fixture in each state and with every malformed case. Nothing
// may panic, and whatever parses must re-encode to bytes that parse to the same document.
func FuzzParse(f *testing.F) {
	f.Add(marshal(f, fixture(f)))
	r := fixture(f)
	r.State, r.Last.To, r.AbortReason = Aborted, Aborted, "wave 2 (10%): 3 of 30 devices failed"
	r.newContent()
	f.Add(marshal(f, r))
	r = fixture(f)
	r.State, r.Last.To, r.SoakUntil = Soaking, Soaking, t0.Add(10*time.Minute)
	f.Add(marshal(f, r))
	for _, c := range malformedCases(f) {
		if len(c.doc) < 1<<16 {
			f.Add(c.doc)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatalf("a parsed document does not marshal: %v", err)
		}
		r2, err := Parse(b)
		if err != nil {
			t.Fatalf("re-encoded document does not parse: %v\n%s", err, b)
		}
		b2, err := r2.Marshal()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the document: %v\n%s\n%s", err, b, b2)
		}
		// What the controller derives from a valid document must not panic either.
		_ = r.Content(r.Sequence+1, t0)
		_ = Evaluate(r, t0, nil)
		_ = Step(r, t0.Add(time.Hour), nil)
		if _, _, err := auditRecord(r); err != nil {
			t.Fatal(err)
		}
	})
}
