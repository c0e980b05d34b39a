package modules

import "testing"

// FuzzParse: the manifest parser never panics, only returns Problems, and whatever it
// accepts survives signing: its canonical JSON parses back to the same canonical JSON.
func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleManifest))
	for _, c := range problemCases {
		f.Add([]byte(c.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if _, ok := err.(Problems); !ok {
				t.Fatalf("error %v is %T, not Problems", err, err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		j, err := m.CanonicalJSON()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Parse(j)
		if err != nil {
			t.Fatalf("canonical JSON %s does not parse: %v", j, err)
		}
		// Compared as signed: an empty list and no list are the same manifest.
		j2, err := m2.CanonicalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(j) != string(j2) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", j, j2)
		}
	})
}

// FuzzVersion: ParseVersion never panics and String gives back what it parsed.
func FuzzVersion(f *testing.F) {
	for _, s := range []string{"1.2.0", "2.0.0-rc.1+abc", "1.0.0-alpha.beta", "01.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		if v.String() != s {
			t.Fatalf("ParseVersion(%q).String() = %q", s, v.String())
		}
		if v.Compare(v) != 0 {
			t.Fatal("a version is not equal to itself")
		}
	})
}
