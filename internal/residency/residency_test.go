//go:build linux

package residency

import (
	"os"
	"strings"
	"testing"
)

const sample = `00400000-00a08000 r-xp 00000000 fe:00 10576226                           /usr/bin/wasmfleet-agent
Size:               6176 kB
Rss:                1984 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00a08000-01072000 r--p 00608000 fe:00 10576226                           /usr/bin/wasmfleet-agent (deleted)
Rss:                3328 kB
Private_Dirty:         4 kB
Anonymous:             4 kB
Swap:                  8 kB
THPeligible:    0
7feda6ee0000-7feda7200000 rw-p 00000000 00:00 0 
Rss:                1612 kB
Private_Dirty:      1612 kB
Anonymous:          1612 kB
`

func TestParseSmaps(t *testing.T) {
	ms, err := parseSmaps(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{0x400000, 0xa08000, "r-xp", fileID{0xfe, 0, 10576226}, 1984 << 10, 0, 0},
		{0xa08000, 0x1072000, "r--p", fileID{0xfe, 0, 10576226}, 3328 << 10, 4 << 10, 8 << 10},
		{0x7feda6ee0000, 0x7feda7200000, "rw-p", fileID{}, 1612 << 10, 1612 << 10, 0},
	}
	if len(ms) != len(want) {
		t.Fatalf("got %d mappings, want %d: %+v", len(ms), len(want), ms)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, ms[i], want[i])
		}
	}
}

func TestReleasable(t *testing.T) {
	ms, err := parseSmaps(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	self := fileID{0xfe, 0, 10576226}
	// The text is released; the read-only data with a copied page and a swapped one is
	// not, nor is anonymous memory.
	for i, want := range []bool{true, false, false} {
		if got := ms[i].releasable(self); got != want {
			t.Errorf("mapping %d (%+v): releasable %v, want %v", i, ms[i], got, want)
		}
	}
	for name, m := range map[string]mapping{
		"another file":     {perms: "r-xp", file: fileID{0xfe, 0, 1}, rss: 4096},
		"writable":         {perms: "rw-p", file: self, rss: 4096},
		"shared":           {perms: "r--s", file: self, rss: 4096},
		"nothing resident": {perms: "r-xp", file: self},
		"swapped copy":     {perms: "r--p", file: self, rss: 4096, swap: 4096},
	} {
		if m.releasable(self) {
			t.Errorf("%s: releasable", name)
		}
	}
}

func TestParseSmapsMalformed(t *testing.T) {
	for name, in := range map[string]string{
		"field before mapping": "Rss: 4 kB\n",
		"short header":         "00400000-00a08000 r-xp 00000000\n",
		"bad range":            "00400000+00a08000 r-xp 00000000 fe:00 1 /x\n",
		"range backwards":      "00a08000-00400000 r-xp 00000000 fe:00 1 /x\n",
		"bad device":           "00400000-00a08000 r-xp 00000000 fe00 1 /x\n",
		"bad inode":            "00400000-00a08000 r-xp 00000000 fe:00 x /x\n",
		"bad permissions":      "00400000-00a08000 rx 00000000 fe:00 1 /x\n",
		"bad size":             "00400000-00a08000 r-xp 00000000 fe:00 1 /x\nRss: -4 kB\n",
		"huge size":            "00400000-00a08000 r-xp 00000000 fe:00 1 /x\nRss: 99999999999999999999 kB\n",
		"size overflows bytes": "00400000-00a08000 r-xp 00000000 fe:00 1 /x\nRss: 9007199254740992 kB\n",
	} {
		if ms, err := parseSmaps(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error, got %+v", name, ms)
		}
	}
}

func FuzzParseSmaps(f *testing.F) {
	f.Add(sample)
	if b, err := os.ReadFile("/proc/self/smaps"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		ms, err := parseSmaps(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.end < m.start || m.rss < 0 || m.anonymous < 0 || m.swap < 0 || len(m.perms) != 4 {
				t.Fatalf("accepted a bad mapping: %+v", m)
			}
		}
	})
}

// exeMappings returns this process's read-only mappings of its executable.
func exeMappings(t *testing.T) []mapping {
	t.Helper()
	self, err := exeID()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := parseSmaps(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	var exe []mapping
	for _, m := range ms {
		if m.file == self && m.perms[1] != 'w' {
			exe = append(exe, m)
		}
	}
	if len(exe) == 0 {
		t.Fatal("no mapping of the executable found: exeID and /proc/self/smaps disagree")
	}
	return exe
}

func resident(ms []mapping) (n int64) {
	for _, m := range ms {
		n += m.rss
	}
	return n
}

func TestReleaseCode(t *testing.T) {
	// Make every page of the executable resident, as a long-running process that has run
	// most of its code would have it: reading /proc/self/mem maps the pages it reads.
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var size int64
	for _, m := range exeMappings(t) {
		if _, err := mem.ReadAt(make([]byte, m.end-m.start), int64(m.start)); err != nil {
			t.Fatalf("read %x-%x: %v", m.start, m.end, err)
		}
		size += int64(m.end - m.start)
	}
	before := resident(exeMappings(t))
	if before < size*9/10 {
		t.Fatalf("only %d of %d bytes resident after reading them all", before, size)
	}

	released, err := ReleaseCode()
	if err != nil {
		t.Fatal(err)
	}
	after := resident(exeMappings(t))
	t.Logf("executable %d KiB: resident %d KiB, released %d KiB, then %d KiB", size>>10, before>>10, released>>10, after>>10)
	if released < before*9/10 || released > size {
		t.Errorf("released %d bytes of %d resident", released, before)
	}
	// What is resident afterwards is what the test ran since the release, mapped back.
	if after > before/2 {
		t.Errorf("%d of %d bytes resident after the release", after, before)
	}
	// The process runs on, and a second release works.
	if _, err := ReleaseCode(); err != nil {
		t.Fatal(err)
	}
}

func TestResident(t *testing.T) {
	exe := resident(exeMappings(t))
	rss, ok := Resident()
	if !ok {
		t.Fatal("no resident memory read from /proc/self/statm")
	}
	// The executable's resident pages, read just before, are part of it.
	if rss < uint64(exe) || rss > 1<<40 {
		t.Errorf("resident %d bytes, with %d of the executable alone", rss, exe)
	}
}
