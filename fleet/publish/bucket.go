package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/internal/tlsconf"
)

// Config says which bucket to write and how to reach it. Every field but Endpoint and
// Bucket has a usable zero value.
type Config struct {
	// Endpoint is host[:port], or http://host[:port] or https://host[:port] (the scheme must
	// agree with Insecure). Required.
	Endpoint string
	// Bucket holds the layout of protocol/objects. Required.
	Bucket string
	// Region signs requests. Empty: minio-go asks the server (GetBucketLocation).
	Region string
	// AccessKey and SecretKey are credentials that may write the bucket (signature v4).
	// Both empty means anonymous requests, which a store rarely lets write.
	AccessKey string
	SecretKey string
	// Insecure speaks plain HTTP. Off by default: HTTPS.
	Insecure bool
	// CAFile is a PEM bundle of CA certificates trusted for the endpoint in addition to the
	// system's.
	CAFile string
}

// String leaves the secret out, so a Config printed by mistake leaks nothing.
func (c Config) String() string {
	secret := ""
	if c.SecretKey != "" {
		secret = "[redacted]"
	}
	return fmt.Sprintf("publish.Config{Endpoint:%q Bucket:%q Region:%q AccessKey:%q SecretKey:%s Insecure:%t CAFile:%q}",
		c.Endpoint, c.Bucket, c.Region, c.AccessKey, secret, c.Insecure, c.CAFile)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// Validate reports what is wrong with the configuration, or nil. Open calls it.
func (c Config) Validate() error {
	_, err := c.hostPort()
	return err
}

// hostPort validates c and returns the endpoint as host[:port].
func (c Config) hostPort() (string, error) {
	ep := c.Endpoint
	switch {
	case ep == "":
		return "", errors.New("s3 endpoint is required")
	case c.Bucket == "":
		return "", errors.New("bucket is required")
	case (c.AccessKey == "") != (c.SecretKey == ""):
		return "", errors.New("set both the s3 access key and secret key, or neither")
	case c.CAFile != "" && c.Insecure:
		return "", errors.New("an s3 CA file needs https, but insecure (plain http) is set")
	}
	if u, err := url.Parse(ep); err == nil && u.Scheme != "" && u.Host != "" {
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return "", fmt.Errorf("s3 endpoint %q: scheme must be http or https", ep)
		case u.Scheme == "http" && !c.Insecure:
			return "", fmt.Errorf("s3 endpoint %q is plain http but insecure is not set", ep)
		case u.Scheme == "https" && c.Insecure:
			return "", fmt.Errorf("s3 endpoint %q is https but insecure (plain http) is set", ep)
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
			return "", fmt.Errorf("s3 endpoint %q: only scheme, host and port are allowed", ep)
		}
		ep = u.Host
	}
	if _, _, err := net.SplitHostPort(ep); err != nil {
		if u, err := url.Parse("//" + ep); err != nil || u.Host != ep || u.Port() != "" {
			return "", fmt.Errorf("s3 endpoint %q is not host[:port]", c.Endpoint)
		}
	}
	return ep, nil
}

// Bucket is the fleet's bucket, opened with credentials that may write it. It is safe for
// concurrent use.
type Bucket struct {
	client *minio.Client
	name   string
	log    zerolog.Logger

	// unconditional is set once the store has answered that it does not implement
	// If-None-Match on PUT; later writes then check and put (see putIfAbsent).
	unconditional atomic.Bool
}

// Open checks cfg and builds a Bucket. It makes no request.
func Open(cfg Config, log zerolog.Logger) (*Bucket, error) {
	c, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	return NewBucket(c, cfg.Bucket, log), nil
}

// Client checks cfg and builds a minio client for it (transport with bounded times and the
// extra CA, static v4 or anonymous credentials). It makes no request. The rollout
// controller's store uses it too.
func (cfg Config) Client() (*minio.Client, error) {
	ep, err := cfg.hostPort()
	if err != nil {
		return nil, err
	}
	tr, err := transport(cfg)
	if err != nil {
		return nil, err
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	c, err := minio.New(ep, &minio.Options{Creds: creds, Secure: !cfg.Insecure, Transport: tr, Region: cfg.Region})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", ep, err)
	}
	return c, nil
}

// NewBucket wraps a minio client that may write bucket.
func NewBucket(c *minio.Client, bucket string, log zerolog.Logger) *Bucket {
	return &Bucket{client: c, name: bucket, log: log}
}

// Name is the bucket's name.
func (b *Bucket) Name() string { return b.name }

func transport(cfg Config) (*http.Transport, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		DisableCompression:    true,
	}
	if cfg.Insecure {
		return tr, nil
	}
	tc, err := tlsconf.Client(cfg.CAFile, "", "")
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	tr.TLSClientConfig = tc
	return tr, nil
}

// errExists is putIfAbsent's answer when the key already holds an object.
var errExists = errors.New("object exists")

// putIfAbsent writes data to key only if key holds no object, with If-None-Match: * (AWS S3
// since 2024, MinIO, versitygw, Ceph RGW): two writers cannot both succeed, and a writer
// never replaces an object. It returns errExists when the key is taken.
//
// A store that answers 501 Not Implemented to the condition is written to without it, after
// the caller's check that the key was free: between that check and the write another
// publisher could write the same key, and the later write wins. This is logged once.
// A store that ignores the header altogether cannot be told apart; see RATIONALE.md.
func (b *Bucket) putIfAbsent(ctx context.Context, key string, data []byte, contentType string, progress io.Reader) (minio.UploadInfo, error) {
	opts := minio.PutObjectOptions{ContentType: contentType, Progress: progress,
		// One PUT, so the condition applies to the one request that creates the object
		// (signed modules are at most 256 MiB; a single PUT takes 5 GiB).
		DisableMultipart: true}
	if !b.unconditional.Load() {
		opts.SetMatchETagExcept("*")
	}
	info, err := b.client.PutObject(ctx, b.name, key, bytes.NewReader(data), int64(len(data)), opts)
	if err == nil {
		return info, nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed":
		return info, errExists
	case resp.StatusCode == http.StatusConflict && resp.Code == "ConditionalRequestConflict":
		// AWS: a concurrent conditional write to the same key is in progress; whoever
		// wins, the key is taken by the time the caller looks again.
		return info, errExists
	case resp.StatusCode == http.StatusNotImplemented && !b.unconditional.Load():
		b.unconditional.Store(true)
		b.log.Warn().Str("bucket", b.name).Str("code", resp.Code).
			Msg("the s3 store does not implement conditional writes (If-None-Match: *); writing after a check instead, so two publishers racing on one version could overwrite each other")
		return b.putIfAbsent(ctx, key, data, contentType, progress)
	}
	return info, fmt.Errorf("put %s: %w", key, err)
}

// get reads a small object. found is false when the key holds none.
func (b *Bucket) get(ctx context.Context, key string, max int64) (data []byte, info minio.ObjectInfo, found bool, err error) {
	obj, err := b.client.GetObject(ctx, b.name, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, info, false, fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Close()
	info, err = obj.Stat()
	if err != nil {
		if isNotFound(err) {
			return nil, info, false, nil
		}
		return nil, info, false, fmt.Errorf("get %s: %w", key, err)
	}
	if info.Size > max {
		return nil, info, true, fmt.Errorf("get %s: %d bytes, more than the %d allowed", key, info.Size, max)
	}
	data, err = io.ReadAll(io.LimitReader(obj, max+1))
	if err != nil {
		return nil, info, true, fmt.Errorf("get %s: %w", key, err)
	}
	if int64(len(data)) > max {
		return nil, info, true, fmt.Errorf("get %s: more than the %d bytes allowed", key, max)
	}
	return data, info, true, nil
}

// stat describes an object. found is false when the key holds none.
func (b *Bucket) stat(ctx context.Context, key string) (minio.ObjectInfo, bool, error) {
	info, err := b.client.StatObject(ctx, b.name, key, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return info, false, nil
		}
		return info, false, fmt.Errorf("stat %s: %w", key, err)
	}
	return info, true, nil
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || (r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket")
}
