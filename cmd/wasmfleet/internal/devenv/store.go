package devenv

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3bolt"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
)

// objectStore is the embedded S3-compatible store: gofakes3 on its bolt backend, one file
// (DIR/s3.db) holding every bucket. bolt writes each object in a transaction that is fsynced
// before the PUT is answered, and gofakes3 checks If-Match and If-None-Match inside that
// transaction, so the conditional writes the rollout controller relies on are atomic. It
// does not check request signatures: any credentials are accepted (it listens on
// loopback by default).
type objectStore struct {
	db   *bolt.DB
	srv  *http.Server
	addr string
	done chan error

	puts, releasePuts atomic.Uint64
}

// startStore opens (or creates) the database at path, makes bucket if it is missing, and
// serves S3 on ln.
func startStore(ln net.Listener, path, bucket string, log zerolog.Logger) (*objectStore, error) {
	// The dev directory's lock keeps other `wasmfleet dev` away; the timeout only bounds a
	// wait on some other program holding the file.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("s3 store %s: %w", path, err)
	}
	backend := s3bolt.New(db)
	ok, err := backend.BucketExists(bucket)
	if err == nil && !ok {
		err = backend.CreateBucket(bucket)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("s3 store: bucket %s: %w", bucket, err)
	}
	s := &objectStore{db: db, addr: ln.Addr().String(), done: make(chan error, 1)}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakesLogger{log.With().Str("part", "s3").Logger()}),
		gofakes3.WithoutVersioning())
	h := faker.Server()
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				s.puts.Add(1)
				if strings.HasPrefix(strings.TrimPrefix(r.URL.Path, "/"+bucket+"/"), "releases/") {
					s.releasePuts.Add(1)
				}
			}
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// close stops serving (letting requests in flight finish, see shutdown) and closes the file.
func (s *objectStore) close() error {
	err := shutdown(s.srv)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// gofakesLogger passes gofakes3's warnings and errors on to zerolog; its info lines (one
// per request) are dropped.
type gofakesLogger struct{ log zerolog.Logger }

func (l gofakesLogger) Print(level gofakes3.LogLevel, v ...any) {
	switch level {
	case gofakes3.LogErr:
		l.log.Error().Msg(strings.TrimSpace(fmt.Sprintln(v...)))
	case gofakes3.LogWarn:
		l.log.Warn().Msg(strings.TrimSpace(fmt.Sprintln(v...)))
	}
}
