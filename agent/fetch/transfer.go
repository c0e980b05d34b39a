package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7"
)

// Stats describes one Download.
type Stats struct {
	// Existing is how many bytes were already in dst when Download was called.
	Existing int64
	// BytesFetched counts body bytes received over the network, by every attempt.
	BytesFetched int64
	// Attempts counts GET requests sent; 0 when dst was already complete.
	Attempts int
	// Resumes counts the requests that asked for a range (bytes=N-) to continue a file.
	Resumes int
}

// DownloadOption adjusts one Download.
type DownloadOption func(*downloadOptions)

type downloadOptions struct {
	sha256 []byte
}

// WithSHA256 makes Download check the file against a hex SHA-256 digest, hashing the bytes
// already on disk before the rest as they stream. On a mismatch Download empties dst and
// returns ErrDigestMismatch, so the next try starts afresh instead of resuming bad bytes.
// An invalid hex digest fails the Download before any request.
func WithSHA256(hexDigest string) DownloadOption {
	return func(o *downloadOptions) {
		b, err := hex.DecodeString(hexDigest)
		if err != nil || len(b) != sha256.Size {
			b = []byte{} // non-nil and wrong length: refused in Download
		}
		o.sha256 = b
	}
}

// Download streams the object key into the file dst and stops at size bytes, the signed
// size. Bytes already in dst are kept and the rest is asked for with a range request
// (bytes=N-), so an interrupted download, by this call or an earlier one, continues where
// it stopped. Transport errors, 5xx and stalls are retried until ctx ends (see RetryPolicy).
// Nothing past size is ever written: an object declared or sent larger is ErrTooLarge, and
// one that is shorter is ErrTooSmall; both empty dst. A dst longer than size is emptied and
// fetched again. dst is fsynced before Download returns.
//
// Download does not verify what it wrote unless WithSHA256 is given: the caller checks the
// file against its release, and must remove or empty it when that check fails, or the
// next Download would resume onto the same bytes.
func (f *Fetcher) Download(ctx context.Context, key, dst string, size int64, opts ...DownloadOption) (Stats, error) {
	var st Stats
	var o downloadOptions
	for _, opt := range opts {
		opt(&o)
	}
	if size < 0 {
		return st, fmt.Errorf("download %s: negative size %d", key, size)
	}
	if o.sha256 != nil && len(o.sha256) != sha256.Size {
		return st, fmt.Errorf("download %s: the SHA256 option is not a hex SHA-256 digest", key)
	}
	file, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return st, fmt.Errorf("download %s: %w", key, err)
	}
	d := &download{f: f, key: key, size: size, file: file, st: &st}
	err = d.run(ctx, o.sha256)
	if serr := file.Sync(); serr != nil && err == nil {
		err = fmt.Errorf("download %s: sync %s: %w", key, dst, serr)
	}
	if cerr := file.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("download %s: close %s: %w", key, dst, cerr)
	}
	return st, err
}

// download is the state of one Download: the file and how much of it is good.
type download struct {
	f    *Fetcher
	key  string
	size int64
	file *os.File
	have int64     // bytes in file, all of them from the object
	hash hash.Hash // over file[0:have], when checking a digest
	st   *Stats
	buf  []byte
}

func (d *download) run(ctx context.Context, want []byte) error {
	fi, err := d.file.Stat()
	if err != nil {
		return fmt.Errorf("download %s: %w", d.key, err)
	}
	d.have = fi.Size()
	if d.have > d.size {
		d.f.log.Warn().Str("key", d.key).Int64("on_disk", d.have).Int64("size", d.size).
			Msg("partial download is longer than the signed size; starting over")
		if err := d.reset(); err != nil {
			return fmt.Errorf("download %s: %w", d.key, err)
		}
	}
	d.st.Existing = d.have
	if want != nil {
		d.hash = sha256.New()
		if _, err := io.Copy(d.hash, io.NewSectionReader(d.file, 0, d.have)); err != nil {
			return fmt.Errorf("download %s: hash the bytes on disk: %w", d.key, err)
		}
	}
	if _, err := d.file.Seek(d.have, io.SeekStart); err != nil {
		return fmt.Errorf("download %s: %w", d.key, err)
	}
	err = d.f.retry(ctx, "download", d.key, d.attempt)
	if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrTooSmall) {
		if rerr := d.reset(); rerr != nil {
			return errors.Join(err, fmt.Errorf("download %s: %w", d.key, rerr))
		}
	}
	if err != nil {
		return err
	}
	if d.hash != nil {
		if got := d.hash.Sum(nil); !bytes.Equal(got, want) {
			if err := d.reset(); err != nil {
				return fmt.Errorf("download %s: %w", d.key, err)
			}
			return fmt.Errorf("download %s: %w: got %x, want %x; emptied the file", d.key, ErrDigestMismatch, got, want)
		}
	}
	return nil
}

// reset empties the file: its bytes cannot be part of the object.
func (d *download) reset() error {
	if err := d.file.Truncate(0); err != nil {
		return permanent{fmt.Errorf("empty the partial file: %w", err)}
	}
	if _, err := d.file.Seek(0, io.SeekStart); err != nil {
		return permanent{err}
	}
	d.have = 0
	if d.hash != nil {
		d.hash.Reset()
	}
	return nil
}

// attempt sends one GET for the missing bytes and appends what arrives. It reports progress
// when the file holds more good bytes than before it: bytes that only replace what a server
// that ignores ranges made it throw away are not progress, or a server that always cuts its
// answer short of what was kept would be asked again and again, for ever.
func (d *download) attempt(ctx context.Context) (progress bool, err error) {
	if d.have == d.size {
		return false, nil
	}
	before := d.have
	defer func() { progress = d.have > before }()
	d.st.Attempts++
	if d.have > 0 {
		d.st.Resumes++
	}
	resp, err := d.f.open(ctx, d.key, d.have)
	if err != nil {
		return false, err
	}
	defer resp.close()

	switch {
	case d.have > 0 && !resp.partial:
		// The server ignored the range and sends the whole object: take it from the start.
		d.f.log.Info().Str("key", d.key).Int64("offset", d.have).Msg("server ignored the range request; starting over")
		if err := d.reset(); err != nil {
			return false, err
		}
	case resp.partial && resp.start != d.have:
		return false, permanent{fmt.Errorf("asked for bytes from %d, the server sent from %d", d.have, resp.start)}
	}
	if resp.total >= 0 && resp.total != d.size {
		if resp.total > d.size {
			return false, permanentf(ErrTooLarge, "the object is %d bytes, more than the signed %d; not downloading it", resp.total, d.size)
		}
		return false, permanentf(ErrTooSmall, "the object is %d bytes, the signed size is %d", resp.total, d.size)
	}

	if d.buf == nil {
		d.buf = make([]byte, 32<<10)
	}
	var w io.Writer = d.file
	if d.hash != nil {
		w = io.MultiWriter(d.file, d.hash)
	}
	for d.have < d.size {
		n, rerr := resp.body.Read(d.buf[:min(int64(len(d.buf)), d.size-d.have)])
		if n > 0 {
			d.st.BytesFetched += int64(n)
			if _, err := w.Write(d.buf[:n]); err != nil {
				return progress, permanent{fmt.Errorf("write: %w", err)}
			}
			d.have += int64(n)
			progress = true
		}
		if rerr == io.EOF && d.have < d.size {
			if resp.total < 0 {
				return progress, permanentf(ErrTooSmall, "the object ended after %d bytes, the signed size is %d", d.have, d.size)
			}
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil && d.have < d.size {
			return progress, resp.readErr(ctx, rerr)
		}
	}
	// size bytes are on disk. A body that goes on is endless data; stop reading there.
	var one [1]byte
	n, rerr := io.ReadFull(resp.body, one[:])
	d.st.BytesFetched += int64(n)
	if n > 0 {
		return progress, permanentf(ErrTooLarge, "the server sent more than the signed %d bytes; stopped there", d.size)
	}
	if rerr != io.EOF {
		// All signed bytes are here; whatever happened after them does not matter.
		d.f.log.Debug().Err(rerr).Str("key", d.key).Msg("reading past the signed size")
	}
	return progress, nil
}

// Get reads a small object (a release envelope, the trust file) into memory. More than max
// bytes is ErrTooLarge. Interrupted reads are retried from the start, like Download's.
func (f *Fetcher) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	if max < 0 {
		return nil, fmt.Errorf("get %s: negative max %d", key, max)
	}
	var out []byte
	err := f.retry(ctx, "get", key, func(ctx context.Context) (bool, error) {
		resp, err := f.open(ctx, key, 0)
		if err != nil {
			return false, err
		}
		defer resp.close()
		if resp.length > max {
			return false, permanentf(ErrTooLarge, "the object is %d bytes, more than the %d allowed", resp.length, max)
		}
		var b bytes.Buffer
		if resp.length >= 0 {
			b.Grow(int(resp.length))
		}
		_, err = b.ReadFrom(io.LimitReader(resp.body, max+1))
		if err != nil {
			return false, resp.readErr(ctx, err)
		}
		if int64(b.Len()) > max {
			return false, permanentf(ErrTooLarge, "the object has more than the %d bytes allowed; stopped reading", max)
		}
		out = b.Bytes()
		return false, nil
	})
	return out, err
}

// response is one GET in flight, its body under the read-idle timeout.
type response struct {
	body    io.ReadCloser
	partial bool  // 206 with a Content-Range
	start   int64 // first byte sent, when partial
	total   int64 // size of the whole object, -1 if not said
	length  int64 // bytes in this body, -1 if not said
	stalled func() bool
	close   func()
}

// readErr names a body read error: a stall, or the transport's own.
func (r *response) readErr(ctx context.Context, err error) error {
	if ctx.Err() == nil && r.stalled() {
		return errStalled
	}
	return err
}

var contentRangeRE = regexp.MustCompile(`^bytes (\d+)-(\d+)/(\d+|\*)$`)

// open sends a GET for key from offset (the whole object when 0). Until close, the request
// is cut if the headers, or then any byte of the body, take longer than IdleTimeout.
func (f *Fetcher) open(ctx context.Context, key string, offset int64) (*response, error) {
	actx, cancel := context.WithCancelCause(ctx)
	idle := f.cfg.IdleTimeout
	timer := time.AfterFunc(idle, func() { cancel(errStalled) })
	stalled := func() bool { return errors.Is(context.Cause(actx), errStalled) }
	stop := func() {
		timer.Stop()
		cancel(context.Canceled)
	}

	var opts minio.GetObjectOptions
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			stop()
			return nil, permanent{err}
		}
	}
	body, info, hdr, err := f.core.GetObject(actx, f.cfg.Bucket, key, opts)
	if err != nil {
		isStall := ctx.Err() == nil && stalled()
		stop()
		if isStall {
			return nil, fmt.Errorf("waiting for response headers: %w", errStalled)
		}
		return nil, err
	}
	var rc io.ReadCloser = body
	if f.bodyHook != nil {
		rc = f.bodyHook(rc)
	}
	r := &response{
		body:    &idleReader{r: rc, timer: timer, idle: idle},
		total:   -1,
		length:  info.Size,
		stalled: stalled,
		close: func() {
			stop()
			body.Close()
		},
	}
	if cr := hdr.Get("Content-Range"); cr != "" {
		m := contentRangeRE.FindStringSubmatch(cr)
		if m == nil {
			r.close()
			return nil, permanent{fmt.Errorf("malformed Content-Range %q", cr)}
		}
		r.partial = true
		r.start, _ = strconv.ParseInt(m[1], 10, 64)
		if m[3] != "*" {
			r.total, _ = strconv.ParseInt(m[3], 10, 64)
		}
	} else {
		r.total = info.Size
	}
	return r, nil
}

// idleReader pushes the stall deadline back with every byte that arrives.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.timer.Reset(r.idle)
	}
	return n, err
}

func (r *idleReader) Close() error { return nil }
