package controller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/minio/minio-go/v7"

	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
)

// MaxObjectSize bounds what Store.Get reads: the largest rollout document.
const MaxObjectSize = rollout.MaxDocumentSize

// Store is rollout.Store on an S3-compatible bucket through minio-go. An object's version
// is its ETag; every Put is conditional: If-Match on the ETag the caller read, or
// If-None-Match: * to create (see RATIONALE.md). It is safe for concurrent use.
type Store struct {
	client *minio.Client
	core   minio.Core
	bucket string

	gets, puts, lists, conflicts atomic.Uint64
	sent, received               atomic.Uint64
}

var _ rollout.Store = (*Store)(nil)

// NewStore wraps a minio client that may read and write bucket.
func NewStore(c *minio.Client, bucket string) *Store {
	return &Store{client: c, core: minio.Core{Client: c}, bucket: bucket}
}

// OpenStore builds a Store from the same configuration `wasmfleet publish` takes. It makes
// no request.
func OpenStore(cfg publish.Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	return NewStore(c, cfg.Bucket), nil
}

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Get reads an object and its ETag with one GET request (minio.Core), so that the version
// always belongs to the bytes: minio's Object API would send a HEAD and then a GET with
// If-Match, which fails when a writer comes in between. A missing key is
// rollout.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, string, error) {
	s.gets.Add(1)
	body, info, _, err := s.core.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return nil, "", fmt.Errorf("get %s: %w", key, rollout.ErrNotFound)
		}
		return nil, "", fmt.Errorf("get %s: %w", key, err)
	}
	defer body.Close()
	if info.Size > MaxObjectSize {
		return nil, "", fmt.Errorf("get %s: %d bytes, more than the %d allowed", key, info.Size, MaxObjectSize)
	}
	data, err := io.ReadAll(io.LimitReader(body, MaxObjectSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("get %s: %w", key, err)
	}
	if len(data) > MaxObjectSize {
		return nil, "", fmt.Errorf("get %s: more than the %d bytes allowed", key, MaxObjectSize)
	}
	if info.ETag == "" {
		return nil, "", fmt.Errorf("get %s: the store sent no ETag, which conditional writes need", key)
	}
	s.received.Add(uint64(len(data)))
	return data, info.ETag, nil
}

// Put writes data to key if the object's ETag is still ifVersion (If-Match), or, with
// ifVersion "", if the key holds no object (If-None-Match: *). A refused condition (412,
// or AWS's 409 for a racing conditional write) is rollout.ErrConflict.
func (s *Store) Put(ctx context.Context, key string, data []byte, ifVersion string) (string, error) {
	s.puts.Add(1)
	opts := minio.PutObjectOptions{ContentType: "application/json", DisableMultipart: true}
	if ifVersion == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifVersion)
	}
	info, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		resp := minio.ToErrorResponse(err)
		switch {
		case resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed",
			resp.StatusCode == http.StatusConflict && resp.Code == "ConditionalRequestConflict",
			// If-Match on a key that is gone: the version read is not current either.
			ifVersion != "" && isNotFound(err):
			s.conflicts.Add(1)
			return "", fmt.Errorf("put %s: %w", key, rollout.ErrConflict)
		case resp.StatusCode == http.StatusNotImplemented:
			return "", fmt.Errorf("put %s: the store does not implement conditional writes, which the rollout controller needs: %w", key, err)
		}
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	s.sent.Add(uint64(len(data)))
	if info.ETag == "" {
		return "", fmt.Errorf("put %s: the store sent no ETag, which conditional writes need", key)
	}
	return info.ETag, nil
}

// List returns every key under prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	s.lists.Add(1)
	var out []string
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, obj.Err)
		}
		out = append(out, obj.Key)
	}
	return out, nil
}

// StoreStats counts a Store's requests (one List may be several S3 requests, one per 1,000
// keys) and the object bytes it moved.
type StoreStats struct {
	Gets, Puts, Lists, Conflicts uint64
	BytesSent, BytesReceived     uint64
}

// Stats returns the counters.
func (s *Store) Stats() StoreStats {
	return StoreStats{Gets: s.gets.Load(), Puts: s.puts.Load(), Lists: s.lists.Load(), Conflicts: s.conflicts.Load(),
		BytesSent: s.sent.Load(), BytesReceived: s.received.Load()}
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || (r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket")
}
