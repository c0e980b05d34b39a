package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/signing"
)

func init() {
	register("publish", "verify a signed release and upload it with its module to the bucket", publishCmd)
}

const publishSynopsis = `[--trust root.json] [--quiet] [S3 flags] RELEASE.dsse.json MODULE.wasm

Verifies the release against the trust file (the bucket's trust/root.json when --trust is not
given) and the module against the release, then uploads module.wasm and release.dsse.json to
releases/NAME/VERSION/. Publishing the same release again changes nothing; a different release
under a published version is refused. With --trust, trust/root.json is uploaded when the bucket
has none. S3 credentials come from WASMFLEET_S3_ACCESS_KEY and WASMFLEET_S3_SECRET_KEY (or
WASMFLEET_S3_SECRET_KEY_FILE).`

// Environment variables the S3 and MQTT flags default to: the agent's names (agent/config),
// so one environment serves both.
const (
	s3EndpointEnv   = "WASMFLEET_S3_ENDPOINT"
	s3BucketEnv     = "WASMFLEET_S3_BUCKET"
	s3RegionEnv     = "WASMFLEET_S3_REGION"
	s3AccessKeyEnv  = "WASMFLEET_S3_ACCESS_KEY"
	s3SecretKeyEnv  = "WASMFLEET_S3_SECRET_KEY"
	s3SecretFileEnv = "WASMFLEET_S3_SECRET_KEY_FILE"
	s3InsecureEnv   = "WASMFLEET_S3_INSECURE"
	s3CAEnv         = "WASMFLEET_S3_CA_FILE"
)

// s3Flags are the flags that say where the bucket is. The secret key is never a flag (it
// would show in ps and in shell history).
type s3Flags struct {
	endpoint, bucket, region, accessKey, ca *string
	insecure                                *bool
	devSecret                               string // from the dev environment (devfallback.go)
}

func addS3Flags(fs *flag.FlagSet) *s3Flags {
	insecure, _ := strconv.ParseBool(os.Getenv(s3InsecureEnv))
	f := &s3Flags{
		endpoint:  fs.String("s3-endpoint", os.Getenv(s3EndpointEnv), "S3 endpoint: host[:port] or http(s)://host[:port] (env "+s3EndpointEnv+")"),
		bucket:    fs.String("bucket", os.Getenv(s3BucketEnv), "bucket holding releases/ and trust/ (env "+s3BucketEnv+")"),
		region:    fs.String("region", os.Getenv(s3RegionEnv), "region to sign requests for; empty asks the store (env "+s3RegionEnv+")"),
		accessKey: fs.String("s3-access-key", os.Getenv(s3AccessKeyEnv), "access key id (env "+s3AccessKeyEnv+"); the secret key only from "+s3SecretKeyEnv+" or "+s3SecretFileEnv),
		insecure:  fs.Bool("s3-insecure", insecure, "plain http instead of https (env "+s3InsecureEnv+")"),
		ca:        fs.String("s3-ca", os.Getenv(s3CAEnv), "PEM CA certificates trusted for the endpoint, besides the system's (env "+s3CAEnv+")"),
	}
	devTargetsOf(fs).s3 = f
	return f
}

// open builds the bucket client. A missing or inconsistent setting is a usage error.
func (f *s3Flags) open(env *Env) (*publish.Bucket, error) {
	secret, err := f.secretKey()
	if err != nil {
		return nil, opError{"s3", err}
	}
	cfg := publish.Config{Endpoint: *f.endpoint, Bucket: *f.bucket, Region: *f.region,
		AccessKey: *f.accessKey, SecretKey: secret, Insecure: *f.insecure, CAFile: *f.ca}
	if err := cfg.Validate(); err != nil {
		return nil, usagef("%v (flags --s3-endpoint, --bucket, --s3-access-key; env %s, %s, %s, %s)",
			err, s3EndpointEnv, s3BucketEnv, s3AccessKeyEnv, s3SecretKeyEnv)
	}
	b, err := publish.Open(cfg, env.Log)
	if err != nil {
		return nil, opError{"s3", err}
	}
	return b, nil
}

// secretFromEnv reads a secret from the variable name, or from the file fileVar names (one
// trailing newline ignored), as the agent does.
func secretFromEnv(name, fileVar string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	p := os.Getenv(fileVar)
	if p == "" {
		return "", nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", fileVar, err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

func publishCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "publish", publishSynopsis)
	trustPath := fs.String("trust", "", "verify against this trust file, and upload it as trust/root.json when the bucket has none (default: the bucket's trust/root.json)")
	quiet := fs.Bool("quiet", false, "no progress bar and no notes on stderr")
	s3 := addS3Flags(fs)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("publish needs a release and a module (usage: wasmfleet publish %s)", strings.SplitN(publishSynopsis, "\n", 2)[0])
	}
	relPath, modPath := fs.Arg(0), fs.Arg(1)
	var trust *signing.Trust
	if *trustPath != "" {
		tb, err := readFile("--trust", *trustPath)
		if err != nil {
			return opError{"trust", err}
		}
		if trust, err = signing.ParseTrust(tb); err != nil {
			return refused(fmt.Errorf("%s: %w", *trustPath, err))
		}
	}
	envl, err := readFile("release", relPath)
	if err != nil {
		return opError{"release", err}
	}
	if signing.IsBundle(envl) { // cosign v3's default output; devices read the envelope
		if envl, err = signing.EnvelopeFromBundle(envl); err != nil {
			return refused(err)
		}
	}
	// The module is read whole (a signed module is at most signing.MaxModuleSize): the bytes
	// verified are the bytes uploaded, whatever happens to the file meanwhile.
	module, err := readModule(modPath)
	if err != nil {
		return opError{"module", err}
	}
	bucket, err := s3.open(env)
	if err != nil {
		return err
	}
	if trust == nil {
		if trust, err = bucket.Trust(ctx); err != nil {
			if errors.Is(err, publish.ErrNoTrust) {
				return opError{"trust", fmt.Errorf("no --trust given and %s", err)}
			}
			if signing.KindOf(err) != nil {
				return refused(err)
			}
			return opError{"s3", err}
		}
	}

	var opts publish.Options
	var bar *progressBar
	if !*quiet && isTerminal(env.Stderr) {
		bar = newProgressBar(env.Stderr, "module.wasm", int64(len(module)))
		opts.Progress = bar
	}
	res, err := bucket.Publish(ctx, &signing.Verifier{Trust: trust}, envl, module, opts)
	bar.finish(err == nil && res.ModuleUploaded)
	switch {
	case err == nil:
	case signing.KindOf(err) != nil:
		return refused(err)
	case errors.Is(err, publish.ErrConflict):
		return opError{"conflict", err}
	default:
		return opError{"s3", err}
	}

	r := res.Release
	what := fmt.Sprintf("%s %s (sha256 %s, %d bytes, signed by %d of %d release keys: %s)",
		r.Manifest.Name, r.Manifest.Version, short12(r.SHA256), r.Size, len(r.SignedBy), r.RoleKeys, shortIDs(r.SignedBy))
	where := fmt.Sprintf("s3://%s/%s%s/%s/", bucket.Name(), objects.ReleasesPrefix, r.Manifest.Name, r.Manifest.Version)
	switch {
	case res.AlreadyPublished():
		fmt.Fprintf(env.Stdout, "already published: %s at %s; nothing written\n", what, where)
		if res.OtherSignatures && !*quiet {
			fmt.Fprintf(env.Stderr, "note: the stored release.dsse.json carries other signatures than %s; it was kept\n", relPath)
		}
	case !res.ReleaseUploaded:
		fmt.Fprintf(env.Stdout, "published %s to %s (the release was there; its missing module.wasm was uploaded)\n", what, where)
	case !res.ModuleUploaded:
		fmt.Fprintf(env.Stdout, "published %s to %s (module.wasm was already there, from an earlier attempt)\n", what, where)
	default:
		fmt.Fprintf(env.Stdout, "published %s to %s\n", what, where)
	}
	if *trustPath != "" {
		tr, err := bucket.PublishTrust(ctx, trust)
		if err != nil {
			return opError{"s3", fmt.Errorf("the release is published, but uploading the trust file failed: %w", err)}
		}
		switch {
		case tr.Uploaded:
			fmt.Fprintf(env.Stdout, "uploaded %s (version %d) to s3://%s/%s\n", *trustPath, trust.Version(), bucket.Name(), objects.TrustKey)
		case !tr.Same && !*quiet:
			fmt.Fprintf(env.Stderr, "note: s3://%s/%s is trust file version %d and %s is version %d; the bucket's was kept\n",
				bucket.Name(), objects.TrustKey, tr.StoredVersion, *trustPath, trust.Version())
		}
	}
	return nil
}

// readModule reads a module file, refusing one larger than any release may sign.
func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, signing.MaxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > signing.MaxModuleSize {
		return nil, fmt.Errorf("%s is larger than the %d bytes a release may sign", path, signing.MaxModuleSize)
	}
	return b, nil
}

func short12(hex string) string {
	if len(hex) > 12 {
		return hex[:12]
	}
	return hex
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar draws "module.wasm [=====>    ]  52%  1.2 MiB / 2.3 MiB" on one terminal line.
// minio-go reads it (PutObjectOptions.Progress) with a buffer as long as each chunk sent.
type progressBar struct {
	w     io.Writer
	name  string
	total int64

	mu    sync.Mutex
	done  int64
	drawn time.Time
}

func newProgressBar(w io.Writer, name string, total int64) *progressBar {
	p := &progressBar{w: w, name: name, total: total}
	p.draw()
	return p
}

func (p *progressBar) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.done
	p.done = min(p.done+int64(len(b)), p.total) // a retried request sends its bytes again
	if time.Since(p.drawn) >= 100*time.Millisecond || (p.done == p.total && prev != p.total) {
		p.drawLocked()
	}
	return len(b), nil
}

// Seek follows minio-go rewinding the body to send it again.
func (p *progressBar) Seek(offset int64, whence int) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if whence == io.SeekStart {
		p.done = min(max(offset, 0), p.total)
	}
	return p.done, nil
}

func (p *progressBar) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drawLocked()
}

func (p *progressBar) drawLocked() {
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = float64(p.done) / float64(p.total)
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	fmt.Fprintf(p.w, "\r%s [%s] %3.0f%%  %s / %s ", p.name, bar, frac*100, humanBytes(p.done), humanBytes(p.total))
	p.drawn = time.Now()
}

// finish ends the bar's line: full when the upload happened, cleared otherwise. A nil bar
// does nothing.
func (p *progressBar) finish(uploaded bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if uploaded {
		p.done = p.total
		p.drawLocked()
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 80))
}
