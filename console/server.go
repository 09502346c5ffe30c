package console

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// Ledger is what the console reads from the ledger's database: the query
// side of ledger.Store, nothing that writes.
type Ledger interface {
	ledger.SessionStore
	ledger.WhoStore
	ledger.UsageStore
	ledger.AuditStore
	ledger.ServerStore
}

// Commander sends signed commands to the hosts' command services for a
// web user (cmdsvc.Client with the console's key).
type Commander interface {
	DoAs(ctx context.Context, actor, serverID, action string, args map[string]string) (*cmdsvc.Reply, error)
}

// Options are what a Server needs.
type Options struct {
	Config   Config
	Accounts *Accounts
	Sessions *Sessions
	Ledger   Ledger
	Live     *Live
	// Commands is nil when the console has no key: pages work, actions
	// say why they cannot.
	Commands Commander
	Audit    Auditor
	// Policies reads the fleet's policies and where users stand
	// (engine.Explain over the ledger's database); nil when the ledger
	// does not run them (LEDGER_POLICY=off): no policy views then.
	Policies ledger.PolicyStore
	// LedgerActions sends the policy changes (quota reset, expiry
	// extension) to the ledger's query service, signed with the
	// console's key; nil without a key.
	LedgerActions LedgerActor
	// Prefix is the subject prefix (SUBJECT_PREFIX), for audit subjects.
	Prefix string
	// KeyPublic is the console's public key (U…), named in its audits.
	KeyPublic string
	Log       *slog.Logger
	Now       func() time.Time
}

// Server is the web console: an http.Handler and its listener.
type Server struct {
	o         Options
	views     map[string]*viewTmpl
	assets    *assets
	limiter   *loginLimiter
	hashSlots chan struct{}
	dummyHash string
	handler   http.Handler

	cacheMu   sync.Mutex
	servers   []ledger.Server
	serversAt time.Time
}

// hashSlots bounds concurrent password checks (each takes the hash's
// memory, 64 MiB by default).
const hashSlots = 2

// New parses the templates, loads the assets and builds the routes; a
// template that uses an undeclared partial or asset fails here.
func New(o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Accounts == nil || o.Sessions == nil || o.Ledger == nil || o.Live == nil || o.Audit == nil {
		return nil, errors.New("console: accounts, sessions, ledger, live state and auditor are required")
	}
	s := &Server{o: o, limiter: newLoginLimiter(o.Config.LoginEvery, o.Config.LoginBurst), hashSlots: make(chan struct{}, hashSlots)}
	if s.limiter.burst <= 0 {
		s.limiter = newLoginLimiter(20*time.Second, 5)
	}
	var err error
	if s.assets, err = loadAssets(); err != nil {
		return nil, err
	}
	if s.views, err = parseViews(s.assets); err != nil {
		return nil, err
	}
	// A hash to check unknown names against, so a login for a name
	// that does not exist costs what one that does costs.
	if s.dummyHash, err = HashPassword("not-a-password-of-anyone", DefaultArgon2); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// Handler is the console with every protection layer.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/{sum}/{name...}", s.assets.serve)
	mux.HandleFunc("GET /login", s.handleLoginForm)
	mux.HandleFunc("POST /login", s.handleLogin)
	mux.Handle("POST /logout", s.auth(s.handleLogout))
	mux.Handle("GET /{$}", s.auth(s.handleOverview))
	mux.Handle("GET /online", s.auth(s.handleOnline))
	mux.Handle("GET /users/{name}", s.auth(s.handleUser))
	mux.Handle("GET /user", s.auth(s.handleUser)) // "." and ".." (userPath)
	mux.Handle("GET /search", s.auth(s.handleSearch))
	mux.Handle("GET /audit", s.auth(s.handleAudit))
	mux.Handle("GET /sessions", s.auth(s.handleSessions))
	mux.Handle("POST /sessions/revoke", s.auth(s.handleRevoke))
	mux.Handle("GET /confirm/{action}", s.auth(s.handleConfirm))
	mux.Handle("POST /actions/{action}", s.auth(s.handleAction))
	mux.Handle("GET /policies", s.auth(s.handlePolicies))
	mux.Handle("GET /confirm/policy/{action}", s.auth(s.handlePolicyConfirm))
	mux.Handle("POST /actions/policy/{action}", s.auth(s.handlePolicyAction))
	mux.Handle("GET /live", s.auth(s.handleLive))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusNotFound, "There is no page at "+short(r.URL.Path)+".")
	})

	cop := http.NewCrossOriginProtection()
	for _, o := range s.o.Config.Origins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			s.o.Log.Warn("console: origin not trusted", "origin", o, "err", err.Error())
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusForbidden, "Cross-origin request refused: the console accepts forms from its own pages only.")
	}))
	return s.recoverer(securityHeaders(s.o.Config.TLSCert != "", cop.Handler(mux)))
}

// recoverer turns a panic into a plain error page; the stack goes to the
// log, never to the browser.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.o.Log.Error("console: handler panicked", "path", r.URL.Path, "panic", fmt.Sprint(v))
				s.fail(w, r, nil, http.StatusInternalServerError, "Internal error; it has been logged.")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// clientIP is the peer's address, or, when the peer is a trusted proxy,
// the last address in X-Forwarded-For that is not one.
func (s *Server) clientIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := ap.Addr().Unmap()
	if !s.trusted(ip) {
		return ip.String()
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a.String()
		}
		ip = a
	}
	return ip.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.o.Config.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Serve runs the console on ln until ctx ends, then shuts down within a
// few seconds (open live streams are cut).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.o.Log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if c := s.o.Config; c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("console TLS: %w", err)
		}
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				hs.Shutdown(sctx)
				cancel()
				hs.Close()
				return
			case <-t.C:
				s.o.Sessions.Sweep()
			}
		}
	}()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
