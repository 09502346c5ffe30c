package console

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Cookie names. The __Host- prefix makes the browser refuse them unless
// they are Secure, for path / and without a Domain: no other host or
// path can set or shadow them.
const (
	sessionCookie = "__Host-console-session"
	loginCookie   = "__Host-console-login" // the login form's CSRF token
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

// reqCtx is what an authenticated handler gets.
type reqCtx struct {
	Session Session
	Account Account
	IP      string
}

type authedHandler func(w http.ResponseWriter, r *http.Request, c *reqCtx)

// auth requires a live session whose account still exists, and on every
// unsafe method the session's CSRF token (form field or header), compared
// in constant time. A missing or dead session sends a page request to the
// login form and refuses anything else with 401.
func (s *Server) auth(h authedHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.session(r)
		if !ok {
			if r.Method == http.MethodGet && r.URL.Path != "/live" {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "You are not logged in (or your session ended): log in again.")
			return
		}
		if !safeMethod(r.Method) {
			got := r.Header.Get(csrfHeader)
			if got == "" {
				r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
				got = r.PostFormValue(csrfField)
			}
			if !validToken(c.Session.CSRF, got) {
				s.fail(w, r, c, http.StatusForbidden, "The form's security token is missing or stale: reload the page and try again.")
				return
			}
		}
		h(w, r, c)
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// validToken compares a CSRF token in constant time; an empty expected
// token never matches.
func validToken(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// session reads the session cookie. The account is looked up on every
// request, so a deleted account or a changed role counts at once.
func (s *Server) session(r *http.Request) (*reqCtx, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, false
	}
	sess, err := s.o.Sessions.Lookup(ck.Value)
	if err != nil {
		return nil, false
	}
	acct, ok, err := s.o.Accounts.Lookup(sess.User)
	if err != nil || !ok {
		return nil, false
	}
	return &reqCtx{Session: sess, Account: acct, IP: s.clientIP(r)}, true
}

func setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	}
	if expires.IsZero() {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

// localPath accepts a redirect target only if it is a path on this
// console ("/users/alice?x=1"), never "//host" or a URL.
func localPath(p string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.IsAbs() || u.Host != "" {
		return "/"
	}
	return p
}
