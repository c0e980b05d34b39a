package modules

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a semantic version (semver.org 2.0.0): MAJOR.MINOR.PATCH with an optional
// pre-release and build metadata. Build metadata is kept but ignored when comparing.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 []string
	Build               string
}

// ParseVersion parses a semantic version such as 1.2.0 or 2.0.0-rc.1+abc.
func ParseVersion(s string) (Version, error) {
	var v Version
	bad := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("%q is not a semantic version (MAJOR.MINOR.PATCH): %s", s, why)
	}
	rest := s
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		v.Build, rest = rest[i+1:], rest[:i]
		if !validIdents(v.Build, false) {
			return bad("bad build metadata")
		}
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		pre := rest[i+1:]
		rest = rest[:i]
		if !validIdents(pre, true) {
			return bad("bad pre-release")
		}
		v.Pre = strings.Split(pre, ".")
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return bad("want three numbers")
	}
	nums := []*uint64{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return bad("numbers have no leading zeros")
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return bad("not a number")
		}
		*nums[i] = n
	}
	return v, nil
}

func validIdents(s string, noLeadingZero bool) bool {
	if s == "" {
		return false
	}
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		numeric := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				numeric = false
			default:
				return false
			}
		}
		if noLeadingZero && numeric && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

// String renders the version.
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Pre) > 0 {
		s += "-" + strings.Join(v.Pre, ".")
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// Compare returns -1, 0 or +1 as v is lower than, equal to or higher than w, by semver
// precedence.
func (v Version) Compare(w Version) int {
	for _, d := range [][2]uint64{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if d[0] != d[1] {
			return cmp(d[0] < d[1])
		}
	}
	switch {
	case len(v.Pre) == 0 && len(w.Pre) == 0:
		return 0
	case len(v.Pre) == 0:
		return 1
	case len(w.Pre) == 0:
		return -1
	}
	for i := 0; i < len(v.Pre) && i < len(w.Pre); i++ {
		a, b := v.Pre[i], w.Pre[i]
		if a == b {
			continue
		}
		an, aerr := strconv.ParseUint(a, 10, 64)
		bn, berr := strconv.ParseUint(b, 10, 64)
		switch {
		case aerr == nil && berr == nil:
			return cmp(an < bn)
		case aerr == nil:
			return -1
		case berr == nil:
			return 1
		}
		return cmp(a < b)
	}
	switch {
	case len(v.Pre) < len(w.Pre):
		return -1
	case len(v.Pre) > len(w.Pre):
		return 1
	}
	return 0
}

func cmp(less bool) int {
	if less {
		return -1
	}
	return 1
}
