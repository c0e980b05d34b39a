package residency

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ReleaseCode drops this process's mappings of its executable's read-only pages (machine
// code and read-only data) and returns how many resident bytes they held.
func ReleaseCode() (int64, error) {
	self, err := exeID()
	if err != nil {
		return 0, fmt.Errorf("identify executable: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("read mappings: %w", err)
	}
	ms, err := parseSmaps(bytes.NewReader(smaps))
	if err != nil {
		return 0, fmt.Errorf("read mappings: %w", err)
	}
	var released int64
	for _, m := range ms {
		if !m.releasable(self) {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), syscall.MADV_DONTNEED); e != 0 {
			return released, fmt.Errorf("release %x-%x: %w", m.start, m.end, e)
		}
		released += m.rss
	}
	return released, nil
}

// fileID names a file as /proc/PID/maps does: device major and minor, and inode.
type fileID struct {
	major, minor uint32
	inode        uint64
}

func exeID() (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return fileID{}, err
	}
	dev := uint64(st.Dev)
	// The glibc encoding of dev_t, as the kernel reports it in stat.
	major := uint32((dev>>8)&0xfff | (dev>>32)&^0xfff)
	minor := uint32(dev&0xff | (dev>>12)&^0xff)
	return fileID{major, minor, uint64(st.Ino)}, nil
}

// mapping is one entry of /proc/PID/smaps, with the fields ReleaseCode needs.
type mapping struct {
	start, end uint64
	perms      string
	file       fileID
	rss        int64
	// Pages that differ from the file: copied on write and resident (anonymous) or swapped
	// out. A relocated read-only segment of a dynamically linked binary has them, and
	// releasing it would revert the relocations. (Private_Dirty is no guide: it counts the
	// file's own pages while they are not yet written back, as for a binary just built.)
	anonymous, swap int64
}

// releasable reports whether m is a read-only private mapping of the file self with
// resident pages, all of them the file's own.
func (m mapping) releasable(self fileID) bool {
	return m.file == self && (m.perms == "r-xp" || m.perms == "r--p") && m.anonymous == 0 && m.swap == 0 && m.rss > 0
}

// parseSmaps reads /proc/PID/smaps: a header line per mapping
// ("start-end perms offset major:minor inode [path]") followed by "Key: value kB" lines.
func parseSmaps(r io.Reader) ([]mapping, error) {
	var ms []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		if key, ok := strings.CutSuffix(f[0], ":"); ok {
			if len(ms) == 0 {
				return nil, fmt.Errorf("line %d: %q before any mapping", line, key)
			}
			if len(f) != 3 || f[2] != "kB" {
				continue // VmFlags, THPeligible and the like
			}
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n < 0 || n > math.MaxInt64>>10 {
				return nil, fmt.Errorf("line %d: %s: bad size %q", line, key, f[1])
			}
			switch key {
			case "Rss":
				ms[len(ms)-1].rss = n << 10
			case "Anonymous":
				ms[len(ms)-1].anonymous = n << 10
			case "Swap":
				ms[len(ms)-1].swap = n << 10
			}
			continue
		}
		m, err := parseHeader(f)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		ms = append(ms, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ms, nil
}

func parseHeader(f []string) (mapping, error) {
	if len(f) < 5 {
		return mapping{}, fmt.Errorf("mapping %q: want at least 5 fields", strings.Join(f, " "))
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if !ok || err1 != nil || err2 != nil || end < start {
		return mapping{}, fmt.Errorf("mapping range %q", f[0])
	}
	maj, mnr, ok := strings.Cut(f[3], ":")
	major, err1 := strconv.ParseUint(maj, 16, 32)
	minor, err2 := strconv.ParseUint(mnr, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return mapping{}, fmt.Errorf("mapping device %q", f[3])
	}
	inode, err := strconv.ParseUint(f[4], 10, 64)
	if err != nil {
		return mapping{}, fmt.Errorf("mapping inode %q", f[4])
	}
	if len(f[1]) != 4 {
		return mapping{}, fmt.Errorf("mapping permissions %q", f[1])
	}
	return mapping{start: start, end: end, perms: f[1],
		file: fileID{uint32(major), uint32(minor), inode}}, nil
}

// Resident returns the process's resident memory, from /proc/self/statm.
func Resident() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}
