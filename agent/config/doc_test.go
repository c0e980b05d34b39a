package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestDocListsEveryVariable: the table of environment variables in doc.go is the one
// Settings gives, so the documentation cannot drift from the code.
func TestDocListsEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, s := range Settings() {
		typ := s.Type
		if s.Secret {
			typ += ", secret"
		}
		fmt.Fprintf(&want, "//\t%-40s %-26s %s\n", s.Env, s.Key, typ)
	}
	if !strings.Contains(string(doc), want.String()) {
		t.Errorf("doc.go does not hold this table of environment variables:\n%s", want.String())
	}
}

// TestJSONKeysAreYAMLKeys: MarshalJSON prints the keys the file takes.
func TestJSONKeysAreYAMLKeys(t *testing.T) {
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			if f.Tag.Get("json") != f.Tag.Get("yaml") {
				t.Errorf("%s.%s: json tag %q, yaml tag %q", rt.Name(), f.Name, f.Tag.Get("json"), f.Tag.Get("yaml"))
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
}
