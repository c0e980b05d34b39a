package dashboard

import (
	"net/url"
	"strconv"
	"time"

	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// pathEscape makes s one path segment of a URL.
func pathEscape(s string) string { return url.PathEscape(s) }

// short is the short form of a key id or digest.
func short(id string) string {
	if keys.ValidID(id) {
		return keys.Short(id)
	}
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}

// ago says how long ago t was, roughly ("3s ago", "5m ago", "2h ago", "4d ago").
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
}

// utc is t in RFC 3339, UTC, to the second ("" for the zero time).
func utc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// num writes n with thousands separators: 10,000.
func num(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// rate writes events per second with a sensible precision.
func rate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 0.1:
		return strconv.FormatFloat(v, 'f', 3, 64)
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
