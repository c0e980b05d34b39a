package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
)

// Config is what a Dashboard shows and who may act on it. Server is required.
type Config struct {
	// Server is the rollout controller the dashboard runs beside: its rollouts
	// (Controller, Store), devices (Fleet) and tallies (Tracker).
	Server *controller.Server
	// Bucket lists the releases and holds the trust file (nil: the releases page says
	// there is no bucket).
	Bucket *publish.Bucket
	// Token is the operator token that unlocks pause, resume and abort; "" makes the
	// dashboard read-only (actions refused). At least MinTokenLength bytes.
	Token string
	Log   zerolog.Logger
}

// MinTokenLength is the shortest operator token New accepts.
const MinTokenLength = 16

// Dashboard serves the whole UI under /. Make one with New.
type Dashboard struct {
	cfg      Config
	srv      *controller.Server
	log      zerolog.Logger
	mux      *http.ServeMux
	pages    map[string]*template.Template
	assets   map[string]asset
	version  string // of the assets, for cache busting
	csrf     *http.CrossOriginProtection
	sessions *sessions
	hub      *hub
	rates    *rates
	rollouts *rolloutCache
	releases *releaseCache
	now      func() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// asset is an embedded static file with its ETag.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// New checks cfg and builds the dashboard. It starts nothing: the live updates run while a
// browser listens to /events.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Server == nil {
		return nil, errors.New("dashboard: a controller server is required")
	}
	if cfg.Token != "" && len(cfg.Token) < MinTokenLength {
		return nil, fmt.Errorf("dashboard: the operator token is %d bytes; use at least %d (for instance: openssl rand -hex 16)", len(cfg.Token), MinTokenLength)
	}
	d := &Dashboard{cfg: cfg, srv: cfg.Server, log: cfg.Log.With().Str("component", "dashboard").Logger(), now: time.Now}
	if err := d.loadAssets(); err != nil {
		return nil, err
	}
	if err := d.loadTemplates(); err != nil {
		return nil, err
	}
	d.csrf = http.NewCrossOriginProtection()
	d.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, http.StatusForbidden, "refused: a cross-origin request (the dashboard's forms only work from its own pages)")
	}))
	d.sessions = newSessions(d.now)
	d.rates = newRates(d.now)
	d.rollouts = newRolloutCache(d.srv.Store(), d.now)
	d.releases = newReleaseCache(cfg.Bucket, d.now)
	d.hub = newHub(d)
	d.srv.Fleet().Listen(func(rep controller.Report) {
		d.rates.observe(rep)
		d.hub.mark(topicDevices)
	})
	d.routes()
	return d, nil
}

func (d *Dashboard) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", d.overview)
	m.HandleFunc("GET /devices", d.devices)
	m.HandleFunc("GET /devices/{id}", d.device)
	m.HandleFunc("GET /releases", d.releasesPage)
	m.HandleFunc("GET /rollouts", d.rolloutsPage)
	m.HandleFunc("GET /rollouts/{id}", d.rolloutPage)
	m.HandleFunc("POST /rollouts/{id}/{action}", d.rolloutAction)
	m.HandleFunc("GET /login", d.loginPage)
	m.HandleFunc("POST /login", d.login)
	m.HandleFunc("POST /logout", d.logout)
	m.HandleFunc("GET /events", d.events)
	m.HandleFunc("GET /static/{file}", d.static)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, http.StatusNotFound, "no such page: "+r.URL.Path)
	})
	d.mux = m
}

// ServeHTTP serves the dashboard: every page, the event stream and the assets, under /.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := d.csrf.Check(r); err != nil {
			d.fail(w, r, http.StatusForbidden, "refused: a cross-origin request (the dashboard's forms only work from its own pages)")
			return
		}
	}
	d.mux.ServeHTTP(w, r)
}

func (d *Dashboard) loadAssets() error {
	d.assets = map[string]asset{}
	sum := sha256.New()
	err := fs.WalkDir(staticFS, "static", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		ct := "application/octet-stream"
		switch path.Ext(p) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		h := sha256.Sum256(b)
		sum.Write(h[:])
		d.assets[path.Base(p)] = asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(h[:8]) + `"`}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dashboard: embedded assets: %w", err)
	}
	d.version = hex.EncodeToString(sum.Sum(nil)[:6])
	return nil
}

// static serves an embedded asset. The pages link to it with ?v=<version of the assets>,
// so it may be cached for long.
func (d *Dashboard) static(w http.ResponseWriter, r *http.Request) {
	a, ok := d.assets[r.PathValue("file")]
	if !ok {
		d.fail(w, r, http.StatusNotFound, "no such file")
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("ETag", a.etag)
	w.Header().Set("Cache-Control", "public, max-age=86400")
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(a.body)
}

// page is what every template gets.
type page struct {
	Title string
	// Nav is the section the page belongs to: overview, devices, releases, rollouts.
	Nav string
	// Topics are the event stream's topics the live part follows ("" when it has none).
	Topics string
	// Live is the URL of the page's live part (this URL with partial=1).
	Live    string
	Asset   string
	Session *session
	// CanAct: the server has an operator token (actions are possible after a login).
	CanAct bool
	// Path is the page's own path and query, for the login's way back.
	Path string
	Data any
}

var funcs = template.FuncMap{
	"pathEscape": pathEscape,
	"short":      short,
	"ago":        ago,
	"utc":        utc,
	"num":        num,
	"pct":        func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) + "%" },
	"join":       strings.Join,
	"int":        func(u uint64) int { return int(min(u, 1<<62)) },
	"inc":        func(i int) int { return i + 1 },
}

func (d *Dashboard) loadTemplates() error {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return fmt.Errorf("dashboard: templates: %w", err)
	}
	d.pages = map[string]*template.Template{}
	for _, name := range []string{"overview", "devices", "device", "releases", "rollouts", "rollout", "login", "error"} {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(templateFS, "templates/"+name+".html")
		}
		if err != nil {
			return fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		d.pages[name] = t
	}
	return nil
}

// render writes a page, or only its live part when the request asks for partial=1.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page, partial bool) {
	p.Asset = d.version
	p.Session = d.sessions.get(r)
	p.CanAct = d.cfg.Token != ""
	p.Path = r.URL.RequestURI()
	if p.Topics != "" {
		q := r.URL.Query()
		q.Set("partial", "1")
		p.Live = r.URL.Path + "?" + q.Encode()
	}
	tmpl := "layout"
	if partial && d.pages[name].Lookup("live") != nil { // a page without a live part is all there is
		tmpl = "live"
	}
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, tmpl, p); err != nil {
		d.log.Error().Err(err).Str("page", name).Msg("render")
		http.Error(w, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Pages carry the session's CSRF token: never stored by a cache.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// errorData is the error page's.
type errorData struct {
	Status  int
	Message string
	// Login: offer the login form (the request needed an operator session), coming back
	// to Next.
	Login bool
	Next  string
}

// fail answers with an error page saying msg.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	d.failLogin(w, r, status, msg, false)
}

func (d *Dashboard) failLogin(w http.ResponseWriter, r *http.Request, status int, msg string, login bool) {
	next := r.URL.RequestURI()
	if r.Method == http.MethodPost {
		next = path.Dir(r.URL.Path) // the page of the form: /rollouts/ID for /rollouts/ID/abort
	}
	data := errorData{Status: status, Message: msg, Login: login, Next: localPath(next)}
	d.render(w, r, status, "error", &page{Title: http.StatusText(status), Data: data}, false)
}

// badRequest answers 400 for a malformed query or form.
func (d *Dashboard) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	d.fail(w, r, http.StatusBadRequest, "bad request: "+err.Error())
}
