package config

import _ "embed"

// Example is a complete configuration with a comment on every setting (example.yaml in
// this package). Settings takes each setting's Doc from it, and a test parses it.
//
//go:embed example.yaml
var Example []byte
