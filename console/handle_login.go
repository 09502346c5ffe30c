package console

import (
	"fmt"
	"net/http"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
)

// handleLoginForm shows the login form with a fresh pre-session CSRF
// token, set in a cookie and in the form (the session's own token does
// not exist yet).
// A logged-in user gets the form too (to log in as someone else: the
// current session ends at that login).
func (s *Server) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	s.loginPage(w, r, http.StatusOK, "", "")
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, status int, user, msg string) {
	tok := randToken(24)
	setCookie(w, loginCookie, tok, s.o.Now().Add(time.Hour))
	s.view(r, nil, "login", "Log in").set("LoginToken", tok).set("Next", localPath(r.FormValue("next"))).
		set("Username", user).set("Error", msg).render(w, status)
}

// handleLogin checks the form token, the rate limits (before any hashing),
// then the password; every outcome is audited. A successful login gets a
// brand-new session (any session cookie it came with is ended first), so
// a planted session id is never promoted.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.loginPage(w, r, http.StatusBadRequest, "", "The form could not be read.")
		return
	}
	ip := s.clientIP(r)
	user, pw := r.PostForm.Get("username"), r.PostForm.Get("password")
	ck, err := r.Cookie(loginCookie)
	if err != nil || !validToken(ck.Value, r.PostForm.Get(csrfField)) {
		s.loginPage(w, r, http.StatusForbidden, user, "The login form expired or was not sent from this console: try again.")
		return
	}
	refuse := func(status int, code, msg, shown string) {
		s.audit(cmdsvc.Audit{Phase: cmdsvc.PhaseRefused, Action: AuditLogin, Actor: auditName(user), Code: code, Message: msg,
			Args: map[string]string{"remote": ip}})
		s.loginPage(w, r, status, user, shown)
	}
	if user == "" || pw == "" {
		s.loginPage(w, r, http.StatusBadRequest, user, "Enter a user name and a password.")
		return
	}
	if err := ValidUsername(user); err != nil {
		refuse(http.StatusUnauthorized, "bad_login", "not a valid user name", "Wrong user name or password.")
		return
	}
	if wait := s.limiter.allow(s.o.Now(), "ip:"+ip, "user:"+user); wait > 0 {
		secs := int(wait.Round(time.Second) / time.Second)
		refuse(http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("too many attempts; retry in %ds", secs),
			fmt.Sprintf("Too many login attempts: try again in %d seconds.", max(secs, 1)))
		return
	}
	acct, known, err := s.o.Accounts.Lookup(user)
	if err != nil {
		s.o.Log.Error("console: accounts file", "err", err.Error())
		refuse(http.StatusServiceUnavailable, "unavailable", "accounts file unusable", "Logins are unavailable: the console cannot read its accounts file (see the ledger's log).")
		return
	}
	hash := s.dummyHash
	if known {
		hash = acct.Hash
	}
	s.hashSlots <- struct{}{}
	ok := CheckHash(hash, pw) && known
	<-s.hashSlots
	if !ok {
		refuse(http.StatusUnauthorized, "bad_login", "wrong user name or password", "Wrong user name or password.")
		return
	}
	if old, err := r.Cookie(sessionCookie); err == nil {
		if sess, err := s.o.Sessions.Lookup(old.Value); err == nil {
			s.o.Sessions.Delete(sess.ID)
		}
	}
	// A login that cannot be audited does not happen (as a command whose
	// audit cannot be written does not run).
	if err := s.o.Audit.Audit(cmdsvc.Audit{Phase: cmdsvc.PhaseDone, Action: AuditLogin, Actor: user, Role: string(acct.Role),
		OK: true, Args: map[string]string{"remote": ip}, Key: s.o.KeyPublic}); err != nil {
		s.o.Log.Error("console: cannot audit a login; refusing it", "user", user, "err", err.Error())
		s.loginPage(w, r, http.StatusServiceUnavailable, user, "Logins are unavailable: the console cannot write its audit log (see the ledger's log).")
		return
	}
	cookie, sess, err := s.o.Sessions.Create(user, ip, r.UserAgent())
	if err != nil {
		s.o.Log.Error("console: cannot create a session", "err", err.Error())
		s.loginPage(w, r, http.StatusServiceUnavailable, user, "Logins are unavailable: the console cannot store sessions (see the ledger's log).")
		return
	}
	setCookie(w, loginCookie, "", time.Time{})
	setCookie(w, sessionCookie, cookie, sess.Expires)
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
}

// auditName is what a login audit names: the name as typed, if it could
// be one, else a marker (a password typed into the name field must not
// land in the audit log).
func auditName(user string) string {
	if ValidUsername(user) != nil {
		return "(invalid)"
	}
	return user
}

// audit writes a console audit event; failures are logged (refusals are
// best effort, like the command service's).
func (s *Server) audit(a cmdsvc.Audit) {
	if a.Key == "" {
		a.Key = s.o.KeyPublic
	}
	if err := s.o.Audit.Audit(a); err != nil {
		s.o.Log.Error("console: cannot write an audit event", "action", a.Action, "err", err.Error())
	}
}

// handleLogout ends the session.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	s.o.Sessions.Delete(c.Session.ID)
	s.audit(cmdsvc.Audit{Phase: cmdsvc.PhaseDone, Action: AuditLogout, Actor: c.Account.Name, Role: string(c.Account.Role),
		OK: true, Args: map[string]string{"remote": c.IP}})
	setCookie(w, sessionCookie, "", time.Time{})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
