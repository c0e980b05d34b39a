package fetch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
)

// RetryPolicy is the backoff between attempts of one Get or Download. The zero value is
// the defaults below.
type RetryPolicy struct {
	// Base is the longest wait after the first failure. Default 200ms.
	Base time.Duration
	// Max caps every wait. Default 30s.
	Max time.Duration
	// Multiplier grows the wait after each failure in a row. Default 2; at least 1.
	Multiplier float64
	// MaxAttempts gives up after so many attempts in a row without progress (an attempt
	// that adds bytes to the download starts the count again, so a link that drops every
	// few megabytes still finishes); 0 tries until the context ends.
	MaxAttempts int
}

// Defaults of the zero RetryPolicy.
const (
	DefaultRetryBase       = 200 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultRetryMultiplier = 2.0
)

func (p RetryPolicy) normalize() (RetryPolicy, error) {
	if p.Base < 0 || p.Max < 0 || p.Multiplier < 0 || p.MaxAttempts < 0 {
		return p, fmt.Errorf("retry policy %+v: values cannot be negative", p)
	}
	if p.Base == 0 {
		p.Base = DefaultRetryBase
	}
	if p.Max == 0 {
		p.Max = DefaultRetryMax
	}
	if p.Multiplier == 0 {
		p.Multiplier = DefaultRetryMultiplier
	}
	if p.Multiplier < 1 {
		return p, fmt.Errorf("retry policy: multiplier %g is below 1", p.Multiplier)
	}
	if p.Max < p.Base {
		return p, fmt.Errorf("retry policy: max %s is below base %s", p.Max, p.Base)
	}
	return p, nil
}

// Delay is the wait after the failures-th failure in a row (0 for the first), given r
// uniform in [0, 1): the ceiling min(Max, Base×Multiplier^failures), of which the upper
// half is random ("equal jitter"). One device never retries faster than half the ceiling,
// while a fleet that lost the same server at once spreads its retries over a window as wide
// as that half.
func (p RetryPolicy) Delay(failures int, r float64) time.Duration {
	ceiling := float64(p.Max)
	if e := float64(p.Base) * math.Pow(p.Multiplier, float64(failures)); e < ceiling {
		ceiling = e
	}
	half := ceiling / 2
	return time.Duration(half + r*half)
}

// permanent marks an error that another attempt cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

func permanentf(sentinel error, format string, args ...any) error {
	return permanent{fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
}

// errStalled is the cause of an attempt cut by the read-idle timeout.
var errStalled = errors.New("no bytes received within the idle timeout")

// classify turns an S3 error response into a typed permanent error, or leaves err to be
// retried: 5xx, throttling, timeouts, clock skew (a device without a real-time clock fixes
// that once NTP has synced) and every transport error (refused, reset, cut short, TLS).
func classify(err error) error {
	var pe permanent
	if errors.As(err, &pe) {
		return err
	}
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return err
	}
	switch er.Code {
	case "NoSuchKey", "NoSuchBucket", "NoSuchVersion":
		return permanent{fmt.Errorf("%w (%s)", ErrNotFound, er.Code)}
	case "RequestTimeTooSkewed", "RequestTimeout", "SlowDown", "SlowDownRead", "Throttling",
		"ThrottlingException", "RequestThrottled", "InternalError", "ServiceUnavailable",
		"ExpiredToken":
		return err
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
		"AccountProblem":
		return permanent{fmt.Errorf("%w (%s: %s)", ErrAccessDenied, er.Code, er.Message)}
	case "InvalidRange":
		return permanent{fmt.Errorf("%w: the server has no byte at the resume offset (%s)", ErrTooSmall, er.Message)}
	}
	code := ""
	if er.Code != "" {
		code = " " + er.Code
	}
	switch {
	case er.StatusCode == http.StatusNotFound:
		return permanent{fmt.Errorf("%w (HTTP %d%s)", ErrNotFound, er.StatusCode, code)}
	case er.StatusCode == http.StatusForbidden || er.StatusCode == http.StatusUnauthorized:
		return permanent{fmt.Errorf("%w (HTTP %d%s)", ErrAccessDenied, er.StatusCode, code)}
	case er.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return permanent{fmt.Errorf("%w: the server has no byte at the resume offset", ErrTooSmall)}
	case er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests:
		return err
	case er.StatusCode >= 400 && er.StatusCode < 500:
		return permanent{fmt.Errorf("HTTP %d: %w", er.StatusCode, err)}
	}
	return err
}

// retry runs attempt until it succeeds, fails for good, MaxAttempts is reached or ctx
// ends. attempt reports whether it made progress (bytes landed): progress restarts the
// backoff from Base, so a link that drops every few seconds but moves data in between is
// not left waiting Max between tries.
func (f *Fetcher) retry(ctx context.Context, what, key string, attempt func(context.Context) (progress bool, err error)) error {
	p := f.cfg.Retry
	failures := 0  // in a row, for the backoff
	fruitless := 0 // attempts in a row that brought nothing, for MaxAttempts
	for n := 1; ; n++ {
		progress, err := attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w (after %d attempts; last: %v)", what, key, context.Cause(ctx), n, err)
		}
		err = classify(err)
		var pe permanent
		if errors.As(err, &pe) {
			return fmt.Errorf("%s %s: %w", what, key, pe.err)
		}
		if progress {
			failures, fruitless = 0, 0
		} else {
			fruitless++
		}
		if p.MaxAttempts > 0 && fruitless >= p.MaxAttempts {
			return fmt.Errorf("%s %s: giving up after %d attempts in a row without progress: %w", what, key, fruitless, err)
		}
		d := p.Delay(failures, f.random())
		failures++
		f.log.Warn().Err(err).Str("key", key).Int("attempt", n).Dur("retry_in", d).Msg(what + " interrupted; retrying")
		if f.sleep(ctx, d) != nil {
			return fmt.Errorf("%s %s: %w (after %d attempts; last: %v)", what, key, context.Cause(ctx), n, err)
		}
	}
}
