package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Sessions: what a login with the operator token gives.
const (
	sessionCookie = "wasmfleet_session"
	// SessionLifetime is how long a login lasts.
	SessionLifetime = 12 * time.Hour
	// maxSessions bounds the sessions kept; the oldest goes first.
	maxSessions = 1000
	// Failed logins: at most loginFailures per loginWindow, then 429 until the window
	// moves on. The token is long and random; this only keeps guessing slow and visible.
	loginFailures = 10
	loginWindow   = time.Minute
	// maxForm bounds a form's body.
	maxForm = 16 << 10
	// maxReason bounds an abort reason typed into the dashboard.
	maxReason = 1000
)

// session is one login. Its CSRF token goes into every form the pages render and must come
// back with each POST.
type session struct {
	id      string
	CSRF    string
	Name    string
	Expires time.Time
}

// Actor is the name the session's actions are recorded under in the audit log.
func (s *session) Actor() string { return "dashboard:" + s.Name }

type sessions struct {
	now func() time.Time

	mu       sync.Mutex
	byID     map[string]*session
	failures []time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, byID: map[string]*session{}}
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for name.
func (s *sessions) create(name string) *session {
	now := s.now()
	ss := &session{id: randomToken(), CSRF: randomToken(), Name: name, Expires: now.Add(SessionLifetime)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, o := range s.byID {
		if !now.Before(o.Expires) {
			delete(s.byID, id)
		}
	}
	for len(s.byID) >= maxSessions {
		var oldest *session
		for _, o := range s.byID {
			if oldest == nil || o.Expires.Before(oldest.Expires) {
				oldest = o
			}
		}
		delete(s.byID, oldest.id)
	}
	s.byID[ss.id] = ss
	return ss
}

// get returns the request's session, or nil.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.byID[c.Value]
	if ss == nil {
		return nil
	}
	if !s.now().Before(ss.Expires) {
		delete(s.byID, ss.id)
		return nil
	}
	return ss
}

func (s *sessions) remove(ss *session) {
	s.mu.Lock()
	delete(s.byID, ss.id)
	s.mu.Unlock()
}

// failed records a failed login and reports whether another attempt is allowed now.
func (s *sessions) allowed(fail bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	keep := s.failures[:0]
	for _, t := range s.failures {
		if now.Sub(t) < loginWindow {
			keep = append(keep, t)
		}
	}
	s.failures = keep
	if fail {
		s.failures = append(s.failures, now)
	}
	return len(s.failures) < loginFailures
}

// checkCSRF compares a form's CSRF token with the session's, in constant time.
func (ss *session) checkCSRF(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(ss.CSRF)) == 1
}

// sameToken compares a typed token with the operator token in constant time (of the
// token's length too: both are hashed first).
func sameToken(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// nameRE is what an operator may call themselves at login: it becomes the actor
// "dashboard:NAME" in the audit log.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// DefaultName is the operator's name when the login form leaves it empty.
const DefaultName = "operator"

// localPath returns next when it is a path on this site, else "/".
func localPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || u.User != nil ||
		!strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	return next
}

// loginData is the login page's.
type loginData struct {
	Next    string
	Name    string
	Problem string
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	v, err := parseQuery(r.URL.RawQuery, "next")
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	status := http.StatusOK
	data := loginData{Next: localPath(v.Get("next")), Name: DefaultName}
	if d.cfg.Token == "" {
		status = http.StatusForbidden
		data.Problem = readOnly
	}
	d.render(w, r, status, "login", &page{Title: "Log in", Data: data}, false)
}

// readOnly says why a dashboard without a token refuses logins and actions.
const readOnly = "this dashboard is read-only: the server was started without an operator token (wasmfleet serve --dashboard-token-file FILE, or WASMFLEET_DASHBOARD_TOKEN)"

// parseForm reads a POST's form (at most maxForm bytes, only the fields in known, each at
// most once).
func parseForm(w http.ResponseWriter, r *http.Request, known ...string) (url.Values, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return nil, fmt.Errorf("the form: %w", err)
	}
	if len(r.URL.RawQuery) > 0 {
		return nil, fmt.Errorf("this form takes no query parameters")
	}
	if err := checkParams(r.PostForm, known...); err != nil {
		return nil, err
	}
	return r.PostForm, nil
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	f, err := parseForm(w, r, "token", "name", "next")
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	data := loginData{Next: localPath(f.Get("next")), Name: f.Get("name")}
	if data.Name == "" {
		data.Name = DefaultName
	}
	fail := func(status int, msg string) {
		data.Problem = msg
		d.render(w, r, status, "login", &page{Title: "Log in", Data: data}, false)
	}
	switch {
	case d.cfg.Token == "":
		fail(http.StatusForbidden, readOnly)
		return
	case !nameRE.MatchString(data.Name):
		data.Name = DefaultName
		fail(http.StatusBadRequest, "a name is 1 to 64 of A-Z a-z 0-9 . _ @ - (it goes into the audit log as dashboard:NAME)")
		return
	case !d.sessions.allowed(false):
		fail(http.StatusTooManyRequests, fmt.Sprintf("too many wrong tokens: at most %d a minute; wait", loginFailures))
		return
	case !sameToken(f.Get("token"), d.cfg.Token):
		d.sessions.allowed(true)
		d.log.Warn().Str("remote", r.RemoteAddr).Str("name", data.Name).Msg("dashboard login refused: wrong token")
		fail(http.StatusForbidden, "wrong token")
		return
	}
	ss := d.sessions.create(data.Name)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: ss.id, Path: "/", Expires: ss.Expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	d.log.Info().Str("remote", r.RemoteAddr).Str("actor", ss.Actor()).Msg("dashboard login")
	http.Redirect(w, r, data.Next, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	f, err := parseForm(w, r, "csrf")
	if err != nil {
		d.badRequest(w, r, err)
		return
	}
	if ss := d.sessions.get(r); ss != nil {
		if !ss.checkCSRF(f.Get("csrf")) {
			d.fail(w, r, http.StatusForbidden, "refused: the form's CSRF token is not your session's (reload the page)")
			return
		}
		d.sessions.remove(ss)
		d.log.Info().Str("remote", r.RemoteAddr).Str("actor", ss.Actor()).Msg("dashboard logout")
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// operator returns the session allowed to act, or answers the request with why not.
func (d *Dashboard) operator(w http.ResponseWriter, r *http.Request, csrf string) *session {
	if d.cfg.Token == "" {
		d.fail(w, r, http.StatusForbidden, "refused: "+readOnly)
		return nil
	}
	ss := d.sessions.get(r)
	if ss == nil {
		d.failLogin(w, r, http.StatusForbidden, "refused: pausing, resuming and aborting need the operator token; log in first", true)
		return nil
	}
	if !ss.checkCSRF(csrf) {
		d.fail(w, r, http.StatusForbidden, "refused: the form's CSRF token is not your session's (reload the page and try again)")
		return nil
	}
	return ss
}
