package topic

import "testing"

var matchCases = []struct {
	filter, topic string
	want          bool
}{
	{"a/b/c", "a/b/c", true},
	{"a/b/c", "a/b", false},
	{"a/b", "a/b/c", false},
	{"a/+/c", "a/b/c", true},
	{"a/+/c", "a//c", true},
	{"a/+/c", "a/b/d", false},
	{"a/+", "a/b/c", false},
	{"+", "a", true},
	{"+", "a/b", false},
	{"+/+", "/a", true},
	{"#", "a/b/c", true},
	{"#", "/", true},
	{"a/#", "a", true},
	{"a/#", "a/", true},
	{"a/#", "a/b/c", true},
	{"a/#", "ab", false},
	{"a/#", "b/a", false},
	{"a/+/#", "a/b", true},
	{"a/+/#", "a", false},
	{"sensors/+/temperature", "sensors/kitchen/temperature", true},
	{"sensors/+/temperature", "sensors/kitchen/humidity", false},
	{"#", "$SYS/broker", false},
	{"+/broker", "$SYS/broker", false},
	{"$SYS/#", "$SYS/broker", true},
	{"a/b", "", false},
	{"", "a", false},
	{"A/b", "a/b", false},
}

func TestMatch(t *testing.T) {
	for _, c := range matchCases {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestExpandThenMatch(t *testing.T) {
	cases := []struct {
		pattern, device, topic string
		want                   bool
	}{
		{"alerts/{device}/#", "pi-7", "alerts/pi-7/temp", true},
		{"alerts/{device}/#", "pi-7", "alerts/pi-7", true},
		{"alerts/{device}/#", "pi-7", "alerts/pi-8/temp", false},
		{"alerts/{device}/+", "pi-7", "alerts/pi-7/a/b", false},
		{"{device}/out", "d1", "d1/out", true},
		{"x/{device}-raw", "d1", "x/d1-raw", true},
		{"x/{device}-raw", "d1", "x/d2-raw", false},
		{"alerts/+/hi", "pi-7", "alerts/anything/hi", true},
	}
	for _, c := range cases {
		if got := Match(Expand(c.pattern, c.device), c.topic); got != c.want {
			t.Errorf("Match(Expand(%q, %q), %q) = %v, want %v", c.pattern, c.device, c.topic, got, c.want)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	good := []string{"a", "a/b", "+", "#", "a/+/b", "a/#", "+/+/#", "/", "a//b"}
	bad := []string{"", "a#", "a/#/b", "a+", "a/b+/c", "#/a", "a\x00b", "\xff"}
	for _, f := range good {
		if err := ValidateFilter(f); err != nil {
			t.Errorf("ValidateFilter(%q) = %v, want nil", f, err)
		}
	}
	for _, f := range bad {
		if err := ValidateFilter(f); err == nil {
			t.Errorf("ValidateFilter(%q) = nil, want an error", f)
		}
	}
}

func TestValidateName(t *testing.T) {
	good := []string{"a", "a/b", "/", "alerts/pi-7/temp", "$SYS/x"}
	bad := []string{"", "a/+", "a/#", "#", "a\x00", "\xc3\x28"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateName(n); err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", n)
		}
	}
}

func TestValidateDeviceID(t *testing.T) {
	for _, id := range []string{"pi-7", "a", "Dev_1.2"} {
		if err := ValidateDeviceID(id); err != nil {
			t.Errorf("ValidateDeviceID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", ".hidden", "a/b", "a+b", "a#", "a b", "<script>"} {
		if err := ValidateDeviceID(id); err == nil {
			t.Errorf("ValidateDeviceID(%q) = nil, want an error", id)
		}
	}
}

// FuzzMatch checks that matching never panics and agrees with itself on exact topics.
func FuzzMatch(f *testing.F) {
	for _, c := range matchCases {
		f.Add(c.filter, c.topic)
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		got := Match(filter, topic)
		if ValidateName(topic) == nil && topic[0] != '$' && filter == topic && !got {
			t.Fatalf("a topic must match itself as a filter: %q", topic)
		}
		if ValidateFilter(filter) == nil && filter == "#" && topic != "" && topic[0] != '$' && !got {
			t.Fatalf("# must match %q", topic)
		}
	})
}
