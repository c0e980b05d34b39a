package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/topic"
)

// maxPEMSize bounds a CA, certificate or key file.
const maxPEMSize = 1 << 20

var (
	// bucketRE is the S3 bucket naming rule (3 to 63 of a-z 0-9 . -, letters or digits at
	// both ends), which every S3-compatible store accepts.
	bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

var logLevels = []string{"debug", "info", "warn", "error"}

// mqttSchemes are the broker URL schemes paho connects to; the last three mean TLS.
var mqttSchemes = map[string]bool{"tcp": false, "ssl": true, "tls": true, "mqtts": true}

// Validate checks c as it will be used, after SetDefaults (Load and Parse already call
// both): required settings, formats, ranges, combinations, and that the files it names
// are readable (and, for CA, certificate and key files, hold what they should). The error,
// if any, is a Problems.
func (c *Config) Validate() error {
	var ps Problems
	bad := func(path, format string, args ...any) { ps.add(path, fmt.Sprintf(format, args...)) }

	if c.DeviceID == "" {
		bad("device_id", "is required")
	} else if err := topic.ValidateDeviceID(c.DeviceID); err != nil {
		bad("device_id", "%v", err)
	}
	seen := map[string]bool{}
	for i, g := range c.Groups {
		p := fmt.Sprintf("groups[%d]", i)
		switch {
		case topic.ValidateDeviceID(g) != nil:
			bad(p, "%q is not a group name (1 to 128 of A-Z a-z 0-9 . _ -, not starting with '.', as device ids)", g)
		case seen[g]:
			bad(p, "%q is listed twice", g)
		}
		seen[g] = true
	}

	c.validateMQTT(bad)
	c.validateS3(bad)

	if c.TrustRoot == "" {
		bad("trust_root", "is required")
	} else if _, err := readFile(c.TrustRoot, maxPEMSize); err != nil {
		bad("trust_root", "%v", err)
	}
	if c.DataDir == "" {
		bad("data_dir", "is required")
	}

	p := c.Policy
	if p.MaxMemory != 0 && (p.MaxMemory < 64*modules.KiB || p.MaxMemory > 4*modules.GiB) {
		bad("policy.max_memory", "%s is out of range (64KiB to 4GiB, or 0 for any)", p.MaxMemory)
	}
	if p.MaxTimeout != 0 && (p.MaxTimeout < ms || p.MaxTimeout > hour) {
		bad("policy.max_timeout", "%s is out of range (1ms to 1h, or 0 for any)", p.MaxTimeout)
	}
	if p.MaxConcurrency < 0 || p.MaxConcurrency > 64 {
		bad("policy.max_concurrency", "%d is out of range (1 to 64, or 0 for any)", p.MaxConcurrency)
	}
	if p.MaxKV > 16*modules.MiB {
		bad("policy.max_kv", "%s is out of range (up to 16MiB, or 0 for any)", p.MaxKV)
	}
	for i, t := range p.AllowedTopics {
		if err := topic.ValidateName(topic.Expand(t, exampleDevice)); err != nil {
			bad(fmt.Sprintf("policy.allowed_topics[%d]", i), "%v; allowed topics are prefixes such as \"alerts/\"", err)
		}
	}

	h := c.Health
	if h.Events < 1 || h.Events > 1_000_000 {
		bad("health.events", "%d is out of range (1 to 1000000)", h.Events)
	}
	if h.Window < second || h.Window > day {
		bad("health.window", "%s is out of range (1s to 24h)", h.Window)
	}
	if !(h.MaxFailureRatio > 0 && h.MaxFailureRatio <= 1) {
		bad("health.max_failure_ratio", "%v is out of range (above 0, at most 1)", h.MaxFailureRatio)
	}
	if c.StatusInterval < second || c.StatusInterval > day {
		bad("status_interval", "%s is out of range (1s to 24h)", c.StatusInterval)
	}
	if c.Outbox.MaxMessages < 1 || c.Outbox.MaxMessages > 1_000_000 {
		bad("outbox.max_messages", "%d is out of range (1 to 1000000)", c.Outbox.MaxMessages)
	}
	if c.Queue.Depth < 1 || c.Queue.Depth > 65536 {
		bad("queue.depth", "%d is out of range (1 to 65536)", c.Queue.Depth)
	}
	if l := c.Metrics.Listen; l != "" {
		if msg := checkLoopback(l); msg != "" {
			bad("metrics.listen", "%s", msg)
		}
	}
	if !slices.Contains(logLevels, c.LogLevel) {
		bad("log_level", "%q is not a log level (%s)", c.LogLevel, strings.Join(logLevels, ", "))
	}
	return ps.err()
}

// exampleDevice stands in for {device} when a topic prefix is checked.
const exampleDevice = "device-1"

const (
	ms     = modules.Duration(time.Millisecond)
	second = modules.Duration(time.Second)
	hour   = modules.Duration(time.Hour)
	day    = modules.Duration(24 * time.Hour)
)

func (c *Config) validateMQTT(bad func(string, string, ...any)) {
	m := c.MQTT
	if len(m.Brokers) == 0 {
		bad("mqtt.brokers", "at least one broker is required")
	}
	anyTLS := false
	seen := map[string]bool{}
	for i, b := range m.Brokers {
		p := fmt.Sprintf("mqtt.brokers[%d]", i)
		tls, msg := checkBroker(b)
		switch {
		case msg != "":
			bad(p, "%s", msg)
		case seen[b]:
			bad(p, "%q is listed twice", b)
		}
		seen[b] = true
		anyTLS = anyTLS || tls
	}
	if m.ClientID == "" {
		if c.DeviceID != "" { // else device_id is reported, and the default comes from it
			bad("mqtt.client_id", "is required (SetDefaults makes it the device id)")
		}
	} else if len(m.ClientID) > 65535 || !utf8.ValidString(m.ClientID) || strings.ContainsRune(m.ClientID, 0) {
		bad("mqtt.client_id", "must be UTF-8 without NUL, at most 65535 bytes")
	}
	if len(m.Username) > 65535 || !utf8.ValidString(m.Username) || strings.ContainsRune(m.Username, 0) {
		bad("mqtt.username", "must be UTF-8 without NUL, at most 65535 bytes")
	}
	if len(m.Password) > 65535 {
		bad("mqtt.password", "is longer than 65535 bytes")
	}
	if m.Username == "" && (m.Password != "" || m.PasswordFile != "") {
		bad("mqtt.username", "is required when a password is set (MQTT sends no password without a user name)")
	}
	if m.PasswordFile != "" {
		if _, err := readFile(m.PasswordFile, maxSecretSize); err != nil {
			bad("mqtt.password_file", "%v", err)
		}
	}
	if m.CAFile != "" {
		checkCA(bad, "mqtt.ca_file", m.CAFile)
	}
	switch {
	case m.CertFile != "" && m.KeyFile == "":
		bad("mqtt.key_file", "is required when mqtt.cert_file is set (mTLS needs both)")
	case m.KeyFile != "" && m.CertFile == "":
		bad("mqtt.cert_file", "is required when mqtt.key_file is set (mTLS needs both)")
	case m.CertFile != "":
		checkKeyPair(bad, "mqtt.cert_file", "mqtt.key_file", m.CertFile, m.KeyFile)
	}
	if !anyTLS && len(m.Brokers) > 0 {
		for _, f := range []struct{ key, value string }{{"mqtt.ca_file", m.CAFile}, {"mqtt.cert_file", m.CertFile}, {"mqtt.key_file", m.KeyFile}} {
			if f.value != "" {
				bad(f.key, "is set, but no broker uses TLS (ssl://, tls:// or mqtts://)")
				break
			}
		}
	}
	if m.KeepAlive < second || m.KeepAlive > 65535*second {
		bad("mqtt.keep_alive", "%s is out of range (1s to 18h12m15s)", m.KeepAlive)
	}
	if m.ConnectTimeout < second || m.ConnectTimeout > 10*60*second {
		bad("mqtt.connect_timeout", "%s is out of range (1s to 10m)", m.ConnectTimeout)
	}
	if err := topic.ValidateName(m.TopicPrefix); err != nil {
		bad("mqtt.topic_prefix", "%v", err)
	} else if strings.HasPrefix(m.TopicPrefix, "/") || strings.HasSuffix(m.TopicPrefix, "/") {
		bad("mqtt.topic_prefix", "%q must not start or end with /", m.TopicPrefix)
	}
}

// checkBroker reports whether the broker URL uses TLS, or what is wrong with it.
func checkBroker(b string) (tls bool, msg string) {
	notURL := fmt.Sprintf("%q is not an MQTT URL (tcp://, ssl://, tls://, mqtts://)", redactURL(b))
	u, err := url.Parse(b)
	if err != nil {
		return false, notURL
	}
	tls, ok := mqttSchemes[u.Scheme]
	if !ok || u.Opaque != "" {
		return false, notURL
	}
	switch {
	case u.User != nil:
		return tls, fmt.Sprintf("%q holds credentials; set mqtt.username and mqtt.password instead", redactURL(b))
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return tls, fmt.Sprintf("%q must be scheme://host:port, with nothing after the port", b)
	}
	if msg := checkHostPort(u.Host, true); msg != "" {
		return tls, fmt.Sprintf("%q: %s", b, msg)
	}
	return tls, ""
}

// checkHostPort says what is wrong with host:port (or host alone, if the port is
// optional), or "".
func checkHostPort(hp string, needPort bool) string {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		if needPort || strings.Contains(hp, ":") {
			return "needs host:port"
		}
		host, port = hp, ""
	}
	if host == "" {
		return "has no host"
	}
	if strings.ContainsAny(host, " /\\@?#") || !utf8.ValidString(host) {
		return fmt.Sprintf("%q is not a host name", host)
	}
	if port != "" || needPort {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("port %q is not 1 to 65535", port)
		}
	}
	return ""
}

func (c *Config) validateS3(bad func(string, string, ...any)) {
	s := c.S3
	switch {
	case s.Endpoint == "":
		bad("s3.endpoint", "is required")
	case strings.Contains(s.Endpoint, "://"):
		bad("s3.endpoint", "%q must be host or host:port, without a scheme (set s3.insecure for plain http)", s.Endpoint)
	default:
		if msg := checkHostPort(s.Endpoint, false); msg != "" {
			bad("s3.endpoint", "%q: %s", s.Endpoint, msg)
		}
	}
	if s.Bucket == "" {
		bad("s3.bucket", "is required")
	} else if !bucketRE.MatchString(s.Bucket) || strings.Contains(s.Bucket, "..") {
		bad("s3.bucket", "%q is not a bucket name (3 to 63 of a-z 0-9 . -, starting and ending with a letter or digit)", s.Bucket)
	}
	if !regionRE.MatchString(s.Region) {
		bad("s3.region", "%q is not a region name (1 to 64 of A-Z a-z 0-9 _ . -)", s.Region)
	}
	hasSecret := s.SecretKey != "" || s.SecretKeyFile != ""
	switch {
	case s.AccessKey != "" && !hasSecret:
		bad("s3.secret_key", "is required when s3.access_key is set (or s3.secret_key_file)")
	case s.AccessKey == "" && hasSecret:
		bad("s3.access_key", "is required when a secret key is set")
	}
	if s.SecretKeyFile != "" {
		if _, err := readFile(s.SecretKeyFile, maxSecretSize); err != nil {
			bad("s3.secret_key_file", "%v", err)
		}
	}
	if s.CAFile != "" {
		if s.Insecure {
			bad("s3.ca_file", "is set, but s3.insecure makes the agent use plain http")
		} else {
			checkCA(bad, "s3.ca_file", s.CAFile)
		}
	}
}

func checkCA(bad func(string, string, ...any), key, path string) {
	b, err := readFile(path, maxPEMSize)
	if err != nil {
		bad(key, "%v", err)
	} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
		bad(key, "%q holds no PEM certificate", path)
	}
}

func checkKeyPair(bad func(string, string, ...any), certKey, keyKey, certPath, keyPath string) {
	cert, err := readFile(certPath, maxPEMSize)
	if err != nil {
		bad(certKey, "%v", err)
	}
	key, err2 := readFile(keyPath, maxPEMSize)
	if err2 != nil {
		bad(keyKey, "%v", err2)
	}
	if err != nil || err2 != nil {
		return
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		bad(certKey, "%q and %q are not a certificate and its key: %v", certPath, keyPath, strings.TrimPrefix(err.Error(), "tls: "))
	}
}

// checkLoopback says why listen is not a loopback host:port, or "".
func checkLoopback(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Sprintf("%q is not host:port", listen)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q: port %q is not 1 to 65535", listen, port)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Sprintf("%q is not a loopback address; /metrics is served to this device only (127.0.0.1, [::1] or localhost)", listen)
	}
	return ""
}
