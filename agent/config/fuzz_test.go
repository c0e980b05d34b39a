package config

import (
	"errors"
	"slices"
	"testing"
)

// FuzzParse: the parser never panics; what it refuses it refuses with Problems, each
// saying something; what it accepts validates again and prints.
func FuzzParse(f *testing.F) {
	dir := fixtureDir(f)
	f.Add(exampleIn(dir))
	f.Add(inDir(conf(), dir))
	for _, c := range problemCases {
		f.Add(inDir(c.yaml, dir))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			checkError(t, err)
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		if cfg.String() == "" || cfg.GoString() == "" {
			t.Fatal("an accepted configuration prints as nothing")
		}
	})
}

// FuzzEnv: any value of any environment variable is taken or refused with Problems.
func FuzzEnv(f *testing.F) {
	dir := fixtureDir(f)
	f.Add("pi-1")
	f.Add("tcp://h:1883, ssl://u:p@h:8883,,")
	f.Add("4MiB")
	f.Add("-1m30s")
	f.Add("NaN")
	f.Add("0.5")
	f.Add(dir + "/ca.pem")
	base := envOf(inDir(conf(), dir))
	f.Fuzz(func(t *testing.T, value string) {
		for i := range table {
			env := append(slices.Clip(base), table[i].Env+"="+value)
			_, err := Load("", env, nil)
			if err != nil {
				checkError(t, err)
			}
			_, err = Load("", nil, map[string]string{table[i].Key: value})
			if err != nil {
				checkError(t, err)
			}
		}
	})
}

// envOf is a configuration file's settings as environment variables (minimal only:
// a flow mapping per section and plain values).
func envOf(text []byte) []string {
	cfg, err := Parse(text)
	if err != nil {
		panic(err)
	}
	var env []string
	for i := range table {
		s := &table[i]
		if !s.isZero(cfg) {
			env = append(env, s.Env+"="+textOf(s.value(cfg).Interface()))
		}
	}
	return env
}

func checkError(t *testing.T, err error) {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is %T, not Problems", err, err)
	}
	if len(ps) == 0 || err.Error() == "" {
		t.Fatal("an empty Problems")
	}
	for _, p := range ps {
		if p.Msg == "" {
			t.Fatalf("a problem at %q says nothing", p.Path)
		}
	}
}
