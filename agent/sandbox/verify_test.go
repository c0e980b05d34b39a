package sandbox

import (
	"flag"
	"os"
	"testing"
)

// TestMain turns on verifyRestore for the tests, not the benchmarks: every restore that
// trusts the guest's record of what it wrote then checks all of memory, so that any test
// whose guest writes memory in a way the record misses fails.
func TestMain(m *testing.M) {
	flag.Parse()
	verifyRestore = flag.Lookup("test.bench").Value.String() == ""
	os.Exit(m.Run())
}
