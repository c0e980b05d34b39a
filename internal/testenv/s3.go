package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/build"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options configures StartS3. The zero value (or nil) is plain HTTP in region us-east-1.
type S3Options struct {
	// PKI, when set, makes the server speak HTTPS with the PKI's server certificate.
	PKI *PKI
	// Region defaults to us-east-1.
	Region string
}

// S3 is a running (or stopped) versitygw with its posix backend, owned by one test.
type S3 struct {
	Dir string // data/ holds one directory per bucket, iam/ the accounts, versitygw.log

	AccessKey string // root credentials
	SecretKey string
	Region    string

	pki     *PKI
	bin     string
	port    int
	srv     *server
	client  *minio.Client
	readers map[string][]string // bucket -> read-only access keys in its policy
}

// StartS3 starts versitygw on a free loopback port with its posix backend in a new
// t.TempDir and waits until GET /health answers. The server is killed when the test ends.
func StartS3(t testing.TB, opts *S3Options) *S3 {
	t.Helper()
	if opts == nil {
		opts = &S3Options{}
	}
	s := &S3{
		Dir:       t.TempDir(),
		AccessKey: "testenv-root",
		SecretKey: randomHex(t, 20),
		Region:    opts.Region,
		pki:       opts.PKI,
		bin:       findBinary(t, "versitygw", goBinDirs()...),
		port:      freePorts(t, 1)[0],
		readers:   map[string][]string{},
	}
	if s.Region == "" {
		s.Region = "us-east-1"
	}
	data, iam := filepath.Join(s.Dir, "data"), filepath.Join(s.Dir, "iam")
	for _, d := range []string{data, iam} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	args := []string{
		"--port", hostPort(s.port),
		"--region", s.Region,
		"--iam-dir", iam,
		"--health", "/health",
		"--quiet",
	}
	if s.pki != nil {
		args = append(args, "--cert", s.pki.ServerCertFile, "--key", s.pki.ServerKeyFile)
	}
	args = append(args, "posix", data)
	s.srv = &server{
		t:       t,
		name:    "versitygw",
		path:    s.bin,
		args:    args,
		env:     []string{"ROOT_ACCESS_KEY_ID=" + s.AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s.SecretKey},
		logFile: filepath.Join(s.Dir, "versitygw.log"),
		ready:   s.healthy,
	}
	t.Cleanup(s.srv.cleanup)
	s.srv.start()
	s.client = s.NewClient(s.AccessKey, s.SecretKey)
	return s
}

// Endpoint is host:port, as minio.New takes it.
func (s *S3) Endpoint() string { return hostPort(s.port) }

// Secure reports whether the server speaks HTTPS.
func (s *S3) Secure() bool { return s.pki != nil }

// URL is http(s)://127.0.0.1:PORT.
func (s *S3) URL() string {
	if s.Secure() {
		return "https://" + s.Endpoint()
	}
	return "http://" + s.Endpoint()
}

// DataDir is the posix backend's root: bucket b's object k is the file DataDir/b/k.
func (s *S3) DataDir() string { return filepath.Join(s.Dir, "data") }

// Client is a minio client with the root credentials.
func (s *S3) Client() *minio.Client { return s.client }

// NewClient is a minio client for this server with the given credentials (trusting the
// PKI's CA when the server speaks HTTPS).
func (s *S3) NewClient(accessKey, secretKey string) *minio.Client {
	s.srv.t.Helper()
	c, err := minio.New(s.Endpoint(), &minio.Options{
		Creds:     credentials.NewStaticV4(accessKey, secretKey, ""),
		Secure:    s.Secure(),
		Region:    s.Region,
		Transport: s.transport(),
	})
	if err != nil {
		s.srv.t.Fatalf("testenv: minio client: %v", err)
	}
	return c
}

// MakeBucket creates a bucket owned by the root account.
func (s *S3) MakeBucket(name string) {
	s.srv.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		s.srv.t.Fatalf("testenv: make bucket %s: %v", name, err)
	}
}

// Put stores data as bucket/key with the root credentials.
func (s *S3) Put(bucket, key string, data []byte) {
	s.srv.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.client.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		s.srv.t.Fatalf("testenv: put %s/%s: %v", bucket, key, err)
	}
}

// Get reads bucket/key with the root credentials.
func (s *S3) Get(bucket, key string) []byte {
	s.srv.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obj, err := s.client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		s.srv.t.Fatalf("testenv: get %s/%s: %v", bucket, key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		s.srv.t.Fatalf("testenv: get %s/%s: %v", bucket, key, err)
	}
	return b
}

// ReadOnlyUser creates an account (role "user") that can list and read bucket and nothing
// else, and returns its credentials. It replaces the bucket's policy with one that names
// every read-only user made for that bucket so far.
func (s *S3) ReadOnlyUser(bucket string) (accessKey, secretKey string) {
	t := s.srv.t
	t.Helper()
	accessKey, secretKey = "ro-"+randomHex(t, 8), randomHex(t, 20)
	cmd := exec.Command(s.bin, "admin", "--endpoint-url", s.URL(),
		"create-user", "--access", accessKey, "--secret", secretKey, "--role", "user")
	cmd.Env = append(os.Environ(), "ADMIN_ACCESS_KEY_ID="+s.AccessKey, "ADMIN_SECRET_ACCESS_KEY="+s.SecretKey)
	if s.pki != nil {
		cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+s.pki.CAFile) // Go's TLS roots on Linux
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: versitygw admin create-user: %v\n%s", err, out)
	}

	s.readers[bucket] = append(s.readers[bucket], accessKey)
	type statement struct {
		Effect    string
		Principal map[string][]string
		Action    []string
		Resource  []string
	}
	policy, err := json.Marshal(struct {
		Version   string
		Statement []statement
	}{
		Version: "2012-10-17",
		Statement: []statement{{
			Effect:    "Allow",
			Principal: map[string][]string{"AWS": s.readers[bucket]},
			Action:    []string{"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"},
			Resource:  []string{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"},
		}},
	})
	if err != nil {
		t.Fatalf("testenv: bucket policy: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.client.SetBucketPolicy(ctx, bucket, string(policy)); err != nil {
		t.Fatalf("testenv: set policy on %s: %v", bucket, err)
	}
	return accessKey, secretKey
}

// Stop sends SIGTERM and waits for the exit.
func (s *S3) Stop() { s.srv.t.Helper(); s.srv.stop() }

// Kill sends SIGKILL and waits for the exit: open downloads are cut.
func (s *S3) Kill() { s.srv.kill() }

// Start starts a stopped server again on the same port with the same data and accounts,
// and waits until it answers.
func (s *S3) Start() { s.srv.t.Helper(); s.srv.start() }

// Running reports whether the server process is alive.
func (s *S3) Running() bool { return s.srv.running() }

// LogTail is the end of versitygw.log, for failure messages.
func (s *S3) LogTail() string { return s.srv.tail() }

func (s *S3) transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.pki != nil {
		tr.TLSClientConfig = s.pki.TLSConfig()
	}
	return tr
}

func (s *S3) healthy() error {
	c := &http.Client{Transport: s.transport(), Timeout: time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(s.URL() + "/health")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health: %s", resp.Status)
	}
	return nil
}

// goBinDirs are where `go install` puts binaries: $GOBIN, else each $GOPATH/bin ($HOME/go/bin
// by default).
func goBinDirs() []string {
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		return []string{gobin}
	}
	var dirs []string
	for _, p := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	return dirs
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	return hex.EncodeToString(b)
}
