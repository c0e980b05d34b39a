// Package fetch is how the agent reads objects from S3-compatible storage (AWS S3, MinIO,
// Ceph, Garage, versitygw) through minio-go: small documents into memory with Get, modules
// onto disk with Download, which resumes an interrupted transfer with a range request and
// never writes more than the signed size.
//
// It is read-only and trusts nothing it fetches: the caller verifies every byte afterwards
// (signing.Release.VerifyModule over the *.unverified file). It does not know where files
// belong on the device (that is agent/store) nor which keys to fetch (protocol/objects).
//
// Every network call runs under the caller's context, a transfer that stops sending is cut
// by a read-idle timeout, and interrupted transfers are retried with jittered exponential
// backoff until the context ends or RetryPolicy.MaxAttempts attempts in a row made no
// progress. Errors that another try cannot fix (no such key, access
// denied, an object of the wrong size) come back at once as typed errors.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/internal/tlsconf"
)

// Errors a caller can act on; match them with errors.Is. They are not retried.
var (
	// ErrNotFound: the bucket has no such key (or no such bucket).
	ErrNotFound = errors.New("object not found")
	// ErrAccessDenied: the credentials may not read the object (403).
	ErrAccessDenied = errors.New("access denied")
	// ErrTooLarge: the object is, or the server sent, more bytes than the cap (the signed
	// size for Download, max for Get). Nothing past the cap is written.
	ErrTooLarge = errors.New("object larger than allowed")
	// ErrTooSmall: the object has fewer bytes than the signed size.
	ErrTooSmall = errors.New("object smaller than its signed size")
	// ErrDigestMismatch: the downloaded bytes do not hash to the SHA256 option.
	ErrDigestMismatch = errors.New("sha256 mismatch")
)

// Config says where the objects are and how hard to try. The zero value of every field but
// Endpoint and Bucket is usable.
type Config struct {
	// Endpoint is host[:port], or a URL http://host[:port] or https://host[:port] whose
	// scheme must agree with Insecure. Required.
	Endpoint string
	// Bucket holds the layout of protocol/objects. Required.
	Bucket string
	// Region signs requests. Empty: minio-go asks the server once (GetBucketLocation) and
	// falls back to us-east-1 when that is denied.
	Region string
	// AccessKey and SecretKey are static, read-only credentials (signature v4). Both empty
	// means anonymous requests, for a public bucket.
	AccessKey string
	SecretKey string
	// Insecure speaks plain HTTP. Off by default: HTTPS.
	Insecure bool
	// CAFile is a PEM bundle of CA certificates trusted for the endpoint in addition to the
	// system's, for a private S3 behind an internal CA.
	CAFile string

	// Retry is the backoff between attempts.
	Retry RetryPolicy
	// DialTimeout bounds a TCP connect and, separately, a TLS handshake. Default 10s.
	DialTimeout time.Duration
	// IdleTimeout is how long a request may wait for response headers, or a body go
	// without a single byte, before the attempt is cut and retried. Default 30s.
	IdleTimeout time.Duration
}

// Defaults of the zero Config.
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultIdleTimeout = 30 * time.Second
)

// String leaves the secret out, so a Config printed by mistake leaks nothing.
func (c Config) String() string {
	secret := ""
	if c.SecretKey != "" {
		secret = "[redacted]"
	}
	return fmt.Sprintf("fetch.Config{Endpoint:%q Bucket:%q Region:%q AccessKey:%q SecretKey:%s Insecure:%t CAFile:%q Retry:%+v DialTimeout:%s IdleTimeout:%s}",
		c.Endpoint, c.Bucket, c.Region, c.AccessKey, secret, c.Insecure, c.CAFile, c.Retry, c.DialTimeout, c.IdleTimeout)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// Validate reports what is wrong with the configuration, or nil. New calls it.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

// normalize validates c and returns it with defaults filled in and Endpoint as host[:port].
func (c Config) normalize() (Config, error) {
	if c.Endpoint == "" {
		return c, errors.New("fetch config: endpoint is required")
	}
	if c.Bucket == "" {
		return c, errors.New("fetch config: bucket is required")
	}
	if u, err := url.Parse(c.Endpoint); err == nil && u.Scheme != "" && u.Host != "" {
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return c, fmt.Errorf("fetch config: endpoint %q: scheme must be http or https", c.Endpoint)
		case u.Scheme == "http" && !c.Insecure:
			return c, fmt.Errorf("fetch config: endpoint %q is plain http but insecure is not set", c.Endpoint)
		case u.Scheme == "https" && c.Insecure:
			return c, fmt.Errorf("fetch config: endpoint %q is https but insecure (plain http) is set", c.Endpoint)
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
			return c, fmt.Errorf("fetch config: endpoint %q: only scheme, host and port are allowed", c.Endpoint)
		}
		c.Endpoint = u.Host
	}
	if _, _, err := net.SplitHostPort(c.Endpoint); err != nil && !isHostOnly(c.Endpoint) {
		return c, fmt.Errorf("fetch config: endpoint %q is not host[:port]", c.Endpoint)
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return c, errors.New("fetch config: set both access key and secret key, or neither")
	}
	if c.CAFile != "" && c.Insecure {
		return c, errors.New("fetch config: a CA file needs https; insecure is set")
	}
	if c.DialTimeout < 0 || c.IdleTimeout < 0 {
		return c, errors.New("fetch config: timeouts cannot be negative")
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	r, err := c.Retry.normalize()
	if err != nil {
		return c, fmt.Errorf("fetch config: %w", err)
	}
	c.Retry = r
	return c, nil
}

func isHostOnly(s string) bool {
	u, err := url.Parse("//" + s)
	return err == nil && u.Host == s && u.Port() == "" && s != ""
}

// Fetcher reads objects from one bucket. It is safe for concurrent use.
type Fetcher struct {
	cfg       Config
	core      minio.Core
	transport *http.Transport
	log       zerolog.Logger

	// Seams for tests: how to wait between attempts, the jitter source, and a wrapper
	// around every response body.
	sleep    func(ctx context.Context, d time.Duration) error
	random   func() float64
	bodyHook func(body io.ReadCloser) io.ReadCloser
}

// New checks cfg and builds a Fetcher. It makes no request: a server that is down now is
// noticed by the first Get or Download, which then retries.
func New(cfg Config, log zerolog.Logger) (*Fetcher, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(cfg)
	if err != nil {
		return nil, err
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     creds,
		Secure:    !cfg.Insecure,
		Transport: tr,
		Region:    cfg.Region,
		// One try per call: the retries, their backoff and the resume offset are ours.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("fetch: s3 client for %s: %w", cfg.Endpoint, err)
	}
	log.Debug().Str("endpoint", cfg.Endpoint).Str("bucket", cfg.Bucket).Str("region", cfg.Region).
		Bool("tls", !cfg.Insecure).Str("ca_file", cfg.CAFile).Bool("anonymous", cfg.AccessKey == "").
		Msg("s3 fetcher ready")
	return &Fetcher{
		cfg:       cfg,
		core:      minio.Core{Client: client},
		transport: tr,
		log:       log,
		sleep:     sleepCtx,
		random:    rand.Float64,
	}, nil
}

// Close drops idle connections. The Fetcher stays usable.
func (f *Fetcher) Close() { f.transport.CloseIdleConnections() }

func newTransport(cfg Config) (*http.Transport, error) {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.IdleTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		// Ranges count bytes of the object as stored; never let the transport gunzip.
		DisableCompression: true,
	}
	if cfg.Insecure {
		return tr, nil
	}
	tc, err := tlsconf.Client(cfg.CAFile, "", "")
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	tr.TLSClientConfig = tc
	return tr, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
