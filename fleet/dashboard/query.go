package dashboard

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// Limits of the query parameters.
const (
	DefaultPerPage = 50
	MinPerPage     = 10
	MaxPerPage     = 500
	MaxPage        = 1_000_000
	// maxParam bounds a free-text parameter (a search, a group, a module).
	maxParam = 128
)

// deviceQuery is what the devices page is asked for.
type deviceQuery struct {
	// Search is a substring of the device id, matched without regard to case.
	Search string
	Group  string
	// Module and Version filter by what the devices run (Version "": any version).
	Module, Version string
	// Online is "", "yes" or "no".
	Online string
	// Sort is one of sortKeys; Desc reverses it.
	Sort    string
	Desc    bool
	Page    int
	Per     int
	Partial bool
}

// sortKeys are the devices page's sort orders, each with its default direction.
var sortKeys = map[string]bool{ // key → descending by default
	"id": false, "seen": true, "online": false, "agent": false, "arch": false, "failures": true,
}

var deviceParams = []string{"q", "group", "module", "online", "sort", "order", "page", "per", "partial"}

// parseDeviceQuery reads the devices page's query. Empty values mean "not set" (a form
// submits every field); anything else that is not understood is an error that says which
// parameter and why: unknown and repeated parameters too, so a typo never silently shows
// another view.
func parseDeviceQuery(raw string) (deviceQuery, error) {
	q := deviceQuery{Sort: "id", Page: 1, Per: DefaultPerPage}
	v, err := parseQuery(raw, deviceParams...)
	if err != nil {
		return q, err
	}
	get := func(k string) string { return v.Get(k) }
	if q.Search, err = text("q", get("q")); err != nil {
		return q, err
	}
	if g := get("group"); g != "" {
		if topic.ValidateDeviceID(g) != nil {
			return q, fmt.Errorf("group %q is not a group name (1 to %d of A-Z a-z 0-9 . _ -, not starting with '.')", clip(g), maxParam)
		}
		q.Group = g
	}
	if m := get("module"); m != "" {
		if len(m) > 2*maxParam {
			return q, fmt.Errorf("module: %d bytes, more than %d", len(m), 2*maxParam)
		}
		name, version, err := registry.ParseModule(m)
		if err != nil {
			return q, fmt.Errorf("module %q: want NAME or NAME@VERSION", clip(m))
		}
		if _, err := text("module", name); err != nil {
			return q, err
		}
		if _, err := text("module", version); err != nil {
			return q, err
		}
		q.Module, q.Version = name, version
	}
	switch o := get("online"); o {
	case "", "yes", "no":
		q.Online = o
	default:
		return q, fmt.Errorf("online %q: want yes or no", clip(o))
	}
	if s := get("sort"); s != "" {
		if _, ok := sortKeys[s]; !ok {
			return q, fmt.Errorf("sort %q: want one of %s", clip(s), strings.Join(sortedKeys(), ", "))
		}
		q.Sort = s
	}
	q.Desc = sortKeys[q.Sort]
	switch o := get("order"); o {
	case "":
	case "asc":
		q.Desc = false
	case "desc":
		q.Desc = true
	default:
		return q, fmt.Errorf("order %q: want asc or desc", clip(o))
	}
	if q.Page, err = intParam("page", get("page"), 1, 1, MaxPage); err != nil {
		return q, err
	}
	if q.Per, err = intParam("per", get("per"), DefaultPerPage, MinPerPage, MaxPerPage); err != nil {
		return q, err
	}
	if q.Partial, err = partialParam(v); err != nil {
		return q, err
	}
	return q, nil
}

// ModuleParam is the module filter as the query writes it: NAME or NAME@VERSION.
func (q deviceQuery) ModuleParam() string {
	if q.Version != "" {
		return q.Module + "@" + q.Version
	}
	return q.Module
}

// Encode is the query string of q (without the leading '?'), defaults left out, for links.
func (q deviceQuery) Encode() string {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("q", q.Search)
	set("group", q.Group)
	set("module", q.ModuleParam())
	set("online", q.Online)
	if q.Sort != "id" {
		v.Set("sort", q.Sort)
	}
	if q.Desc != sortKeys[q.Sort] {
		v.Set("order", map[bool]string{false: "asc", true: "desc"}[q.Desc])
	}
	if q.Page != 1 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	if q.Per != DefaultPerPage {
		v.Set("per", strconv.Itoa(q.Per))
	}
	return v.Encode()
}

func sortedKeys() []string {
	ks := make([]string, 0, len(sortKeys))
	for k := range sortKeys {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// parsePartial reads the query of a page whose only parameter is partial=1.
func parsePartial(raw string) (bool, error) {
	v, err := parseQuery(raw, "partial")
	if err != nil {
		return false, err
	}
	return partialParam(v)
}

// parseQuery decodes a raw query (a malformed one is an error, where url.URL.Query would
// drop what it cannot read) and refuses parameters not in known.
func parseQuery(raw string, known ...string) (url.Values, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("the query: %w", err)
	}
	if err := checkParams(v, known...); err != nil {
		return nil, err
	}
	return v, nil
}

func partialParam(v url.Values) (bool, error) {
	switch p := v.Get("partial"); p {
	case "":
		return false, nil
	case "1":
		return true, nil
	default:
		return false, fmt.Errorf("partial %q: want 1", clip(p))
	}
}

// checkParams refuses parameters not in known, and any given more than once.
func checkParams(v url.Values, known ...string) error {
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	slices.Sort(names) // the same error for the same query
	for _, k := range names {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return fmt.Errorf("unknown parameter %q (this URL takes none)", clip(k))
			}
			if len(known) == 1 {
				return fmt.Errorf("unknown parameter %q (this page takes only %s)", clip(k), known[0])
			}
			return fmt.Errorf("unknown parameter %q (known: %s)", clip(k), strings.Join(known, ", "))
		}
		if n := len(v[k]); n > 1 {
			return fmt.Errorf("parameter %q is given %d times", k, n)
		}
	}
	return nil
}

// text checks a free-text parameter: valid UTF-8, no control characters, at most maxParam
// bytes.
func text(name, s string) (string, error) {
	switch {
	case len(s) > maxParam:
		return "", fmt.Errorf("%s: %d bytes, more than %d", name, len(s), maxParam)
	case !utf8.ValidString(s):
		return "", fmt.Errorf("%s: not valid UTF-8", name)
	case strings.ContainsFunc(s, isControl):
		return "", fmt.Errorf("%s %q: contains a control character", name, s)
	}
	return s, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// intParam reads a whole number from min to max; "" is def.
func intParam(name, s string, def, min, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%s %q: want a whole number from %d to %d", name, clip(s), min, max)
	}
	return n, nil
}

// clip shortens what a client sent before an error message repeats it.
func clip(s string) string {
	if len(s) <= 40 {
		return s
	}
	i := 40
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
