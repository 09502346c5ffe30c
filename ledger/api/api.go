// Package api owns the ledger's query endpoints: a NATS micro service
// ("ocserv-ledger", subjects <prefix>.ledger.<action>, queue group so any
// instance answers) whose requests are signed operator commands checked by
// package opauth exactly as the command service checks them (signature,
// trusted key, subject, validity, nonce); every action is read-only. The
// client half signs and sends them for ctl. docs/ledger.md has the wire
// format.
package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/time/rate"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

// ServiceName is the micro service's name.
const ServiceName = "ocserv-ledger"

// APIVersion is the query API's version (SemVer).
const APIVersion = "1.0.0"

// ReplyServerID is the server_id of every reply: the ledger speaks for
// the fleet, not for one server.
const ReplyServerID = "ledger"

// Subject is <prefix>.ledger.<action>.
func Subject(prefix, action string) string { return prefix + ".ledger." + action }

// Actions the service answers.
var Actions = []string{"history", "who", "usage", "audit", "servers", "session", "status"}

// Options configure the service.
type Options struct {
	NC       *nats.Conn
	Prefix   string
	Store    ledger.Store
	Verifier *opauth.Verifier
	// InboxPrefixes are the subject prefixes a reply may go to (default
	// "_INBOX"): a request naming any other is dropped unanswered, as the
	// command service does (cmdsvc.InboxReply).
	InboxPrefixes []string
	// Status reports the ingest side (the status action).
	Status  func() any
	Timeout time.Duration // one query's bound (default 10s)
	Log     *slog.Logger
	Build   string
	// OnRequest, when set, is told each request's action and outcome
	// code ("" for success) and duration (metrics).
	OnRequest func(action, code string, d time.Duration)
	// Policy, when set, adds the policy endpoints (PolicyActions) and the
	// users' limits to usage answers (docs/policy.md).
	Policy *PolicyHooks
	// MaxInFlight bounds the requests answered at once (default 8) and
	// MaxPerKey those of one operator key (default 2). A request beyond
	// either is refused busy at once: a key sending heavy queries holds
	// its share of the service, never all of it.
	MaxInFlight, MaxPerKey int
}

// CodeBusy refuses a request beyond Options.MaxInFlight or MaxPerKey.
const CodeBusy = "busy"

// Service is the running query service.
type Service struct {
	o   Options
	svc micro.Service

	logLim     *rate.Limiter
	mu         sync.Mutex
	suppressed int

	// Requests being answered, in all and per operator key (inflightMu).
	inflightMu sync.Mutex
	inflight   int
	perKey     map[string]int
	running    sync.WaitGroup
}

// Start registers the endpoints.
func Start(o Options) (*Service, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if len(o.InboxPrefixes) == 0 {
		o.InboxPrefixes = []string{cmdsvc.DefaultInboxPrefix}
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 8
	}
	if o.MaxPerKey <= 0 {
		o.MaxPerKey = 2
	}
	s := &Service{o: o, logLim: rate.NewLimiter(rate.Every(time.Second), 5), perKey: map[string]int{}}
	svc, err := micro.AddService(o.NC, micro.Config{
		Name:        ServiceName,
		Version:     APIVersion,
		Description: "ocserv-telemetry fleet ledger (signed, read-only queries)",
		Metadata:    map[string]string{"prefix": o.Prefix, "build": o.Build, "engine": o.Store.Engine()},
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			o.Log.Warn("ledger api: nats error", "subject", e.Subject, "err", e.Description)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("ledger api: %w", err)
	}
	s.svc = svc
	g := svc.AddGroup(o.Prefix + ".ledger")
	for _, a := range Actions {
		a := a
		if err := g.AddEndpoint(a, micro.HandlerFunc(func(r micro.Request) { s.handle(a, r) }),
			micro.WithEndpointMetadata(map[string]string{"role": string(opauth.ReadOnly)})); err != nil {
			svc.Stop()
			return nil, fmt.Errorf("ledger api: endpoint %s: %w", a, err)
		}
	}
	if o.Policy != nil {
		for a, role := range PolicyActions {
			a := a
			if err := g.AddEndpoint(a, micro.HandlerFunc(func(r micro.Request) { s.handle(a, r) }),
				micro.WithEndpointMetadata(map[string]string{"role": string(role)})); err != nil {
				svc.Stop()
				return nil, fmt.Errorf("ledger api: endpoint %s: %w", a, err)
			}
		}
	}
	if err := o.NC.FlushTimeout(5 * time.Second); err != nil && o.NC.IsConnected() {
		o.Log.Warn("ledger api: flush after registering", "err", err.Error())
	}
	return s, nil
}

// Stop drains the endpoints and waits for the requests being answered.
func (s *Service) Stop() error {
	err := s.svc.Stop()
	s.running.Wait()
	return err
}

// take reserves room for one request of key; false when the service or
// the key has none (the refusal's text says which).
func (s *Service) take(key string) (bool, string) {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if s.perKey[key] >= s.o.MaxPerKey {
		return false, fmt.Sprintf("this key already has %d requests being answered (at most %d at once); send again when one has been answered", s.perKey[key], s.o.MaxPerKey)
	}
	if s.inflight >= s.o.MaxInFlight {
		return false, fmt.Sprintf("the ledger is answering %d requests (at most %d at once); send again shortly", s.inflight, s.o.MaxInFlight)
	}
	s.inflight++
	s.perKey[key]++
	return true, ""
}

func (s *Service) release(key string) {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	s.inflight--
	if s.perKey[key]--; s.perKey[key] <= 0 {
		delete(s.perKey, key)
	}
}

// handle checks a request where it arrives (the endpoint's one
// goroutine: checks are cheap) and answers it in a goroutine of its own,
// so a slow query holds its own room, not the endpoint.
func (s *Service) handle(action string, r micro.Request) {
	start := time.Now()
	report := func(code string) {
		if s.o.OnRequest != nil {
			s.o.OnRequest(action, code, time.Since(start))
		}
	}
	query, key, code := s.check(action, r)
	if query == nil {
		report(code)
		return
	}
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		defer s.release(key)
		report(s.answer(action, r, query))
	}()
}

// check verifies a request, prepares its query and takes room for it
// (key's, given back by release); a refused one is answered here, and
// query is nil with the refusal's code.
func (s *Service) check(action string, r micro.Request) (query func(context.Context) (any, error), key, code string) {
	if !cmdsvc.InboxReply(r.Reply(), s.o.InboxPrefixes) {
		code = cmdsvc.CodeBadReply
		s.logRefusal(action, opauth.Verified{}, &opauth.Error{Code: code,
			Msg: fmt.Sprintf("reply subject %q is not under the inbox prefixes (%s); request dropped unanswered",
				strings.ToValidUTF8(r.Reply(), "?"), strings.Join(s.o.InboxPrefixes, ", "))})
		return nil, "", code
	}
	need, isPolicy := PolicyActions[action]
	if !isPolicy || s.o.Policy == nil {
		need = opauth.ReadOnly
	}
	ver, rerr := s.o.Verifier.Check(r.Subject(), action, need, r.Data())
	if rerr != nil {
		s.logRefusal(action, ver, rerr)
		s.respondErr(r, action, rerr.Code, rerr.Msg)
		return nil, "", rerr.Code
	}
	// The arguments are checked before the nonce is recorded: a refused
	// request never uses up the key's room in the nonce cache.
	var err error
	if isPolicy && s.o.Policy != nil {
		query, err = s.preparePolicy(action, ver.Cmd.Args, byLabel(ver))
	} else {
		query, err = s.prepare(action, ver.Cmd.Args)
	}
	if err != nil {
		code = ledger.ErrorCode(err)
		s.respondErr(r, action, code, err.Error())
		return nil, "", code
	}
	// Room is taken before the nonce is recorded too: a request refused
	// busy can be sent again as it was.
	key = ver.Key.Key
	if ok, msg := s.take(key); !ok {
		s.logRefusal(action, ver, &opauth.Error{Code: CodeBusy, Msg: msg})
		s.respondErr(r, action, CodeBusy, msg)
		return nil, "", CodeBusy
	}
	if rerr := s.o.Verifier.Consume(ver); rerr != nil {
		s.release(key)
		s.logRefusal(action, ver, rerr)
		s.respondErr(r, action, rerr.Code, rerr.Msg)
		return nil, "", rerr.Code
	}
	return query, key, ""
}

// answer runs a checked request's query and sends its reply; it returns
// the outcome's code ("" for success).
func (s *Service) answer(action string, r micro.Request, query func(context.Context) (any, error)) (code string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	res, err := query(ctx)
	if err != nil {
		code = ledger.ErrorCode(err)
		msg := err.Error()
		if code == ledger.ECodeInternal {
			s.o.Log.Error("ledger api: query failed", "action", action, "err", msg)
		}
		s.respondErr(r, action, code, msg)
		return code
	}
	b, err := s.reply(action, res)
	if err != nil {
		code = ledger.ErrorCode(err)
		s.respondErr(r, action, code, err.Error())
		return code
	}
	if err := r.Respond(b); err != nil {
		s.o.Log.Warn("ledger api: reply failed", "err", err.Error())
	}
	return ""
}

// usageRowBytes is less than the JSON of any usage row.
const usageRowBytes = 80

// maxPayload is the largest message the server takes.
func (s *Service) maxPayload() int64 {
	if n := s.o.NC.MaxPayload(); n > 0 {
		return n
	}
	return 1 << 20 // NATS's default, before the server's INFO
}

// reply is the successful answer to send. It must fit in one NATS
// message: the free text of sessions and audit entries comes from hosts
// and VPN clients (up to the ledger's cap per field, and JSON spells a
// control character in six bytes), so a page may not fit even at the
// default limit. A page is then cut where it still fits, its cursor
// pointing at the first session or entry left out, as a smaller limit
// would have; any other answer too large is refused with a code saying
// so, rather than left to time out on the asker's side as if the ledger
// were down.
func (s *Service) reply(action string, res any) ([]byte, error) {
	max := s.maxPayload()
	encode := func(res any) ([]byte, error) {
		body, err := json.Marshal(res)
		if err != nil {
			return nil, ledger.Errorf(ledger.ECodeInternal, "encode the answer: %v", err)
		}
		return json.Marshal(cmdsvc.Reply{OK: true, ServerID: ReplyServerID, Action: action, Result: body})
	}
	b, err := encode(res)
	if err != nil || int64(len(b)) <= max {
		return b, err
	}
	n, cut := 0, func(int) any { return nil }
	switch x := res.(type) {
	case HistoryResult:
		n = len(x.Sessions)
		cut = func(k int) any {
			last := x.Sessions[k-1]
			return HistoryResult{Sessions: x.Sessions[:k], NextCursor: ledger.Cursor{Time: last.ConnectedAt, ID: last.UID}.Encode()}
		}
	case AuditResult:
		n = len(x.Entries)
		cut = func(k int) any {
			last := x.Entries[k-1]
			return AuditResult{Entries: x.Entries[:k], NextCursor: ledger.Cursor{Time: last.Time, ID: last.EventID}.Encode()}
		}
	}
	// The longest prefix that fits (at least one item, or nothing fits).
	var best []byte
	lo, hi := 1, n-1
	for lo <= hi {
		k := (lo + hi) / 2
		b, err := encode(cut(k))
		if err != nil {
			return nil, err
		}
		if int64(len(b)) <= max {
			best, lo = b, k+1
		} else {
			hi = k - 1
		}
	}
	if best != nil {
		return best, nil
	}
	return nil, ledger.Errorf(ledger.ECodeTooLarge, "the answer (%d bytes) is over the NATS server's max payload (%d bytes): ask a narrower question (a user, a server, a shorter range, a smaller limit or top)", len(b), max)
}

// logRefusal logs refused requests, at most a few a second (a flood of
// unsigned requests must not flood the log); the rest are counted into
// the next line.
func (s *Service) logRefusal(action string, v opauth.Verified, e *opauth.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.logLim.Allow() {
		s.suppressed++
		return
	}
	key := ""
	if v.Cmd != nil {
		key = v.Cmd.Key
	}
	s.o.Log.Warn("ledger api: request refused", "action", action, "code", e.Code, "key", key, "msg", e.Msg, "suppressed_before", s.suppressed)
	s.suppressed = 0
}

func (s *Service) respondErr(r micro.Request, action, code, msg string) {
	b, _ := json.Marshal(cmdsvc.Reply{ServerID: ReplyServerID, Action: action, Error: &cmdsvc.ReplyError{Code: code, Message: msg}})
	if err := r.Error(code, msg, b); err != nil {
		s.o.Log.Warn("ledger api: reply failed", "err", err.Error())
	}
}

// Results of the actions (docs/ledger.md).
type (
	HistoryResult struct {
		Sessions   []ledger.Session `json:"sessions"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}
	WhoResult struct {
		IP       string           `json:"ip"`
		At       time.Time        `json:"at"`
		Sessions []ledger.Session `json:"sessions"`
	}
	UsageResult struct {
		From string            `json:"from"`
		To   string            `json:"to"`
		By   string            `json:"by"`
		Rows []ledger.UsageRow `json:"rows"`
		// Limits: where each user with a policy stands now (remaining
		// quota, expiry), when the ledger runs fleet policy.
		Limits map[string]Limits `json:"limits,omitempty"`
	}
	AuditResult struct {
		Entries    []ledger.AuditEntry `json:"entries"`
		NextCursor string              `json:"next_cursor,omitempty"`
	}
	ServersResult struct {
		Servers []ledger.Server `json:"servers"`
	}
	SessionResult struct {
		Session ledger.Session  `json:"session"`
		Samples []ledger.Sample `json:"samples"`
	}
)

// args reads the request's arguments, refusing unknown ones.
type args struct {
	m    map[string]string
	errs []string
}

func (a *args) known(names ...string) error {
	for k := range a.m {
		ok := false
		for _, n := range names {
			ok = ok || k == n
		}
		if !ok {
			return ledger.Errorf(ledger.ECodeInvalid, "%s: unknown argument (known: %s)", k, strings.Join(names, ", "))
		}
	}
	return nil
}

func (a *args) str(name string, max int) (string, error) {
	v := a.m[name]
	if len(v) > max {
		return "", ledger.Errorf(ledger.ECodeInvalid, "%s: longer than %d bytes", name, max)
	}
	return v, nil
}

// ParseTime reads an RFC 3339 time or a date (midnight UTC).
func ParseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, ledger.Errorf(ledger.ECodeInvalid, "%s: %q is not an RFC 3339 time (2026-11-24T14:05:00Z) or a date (2026-11-24)", name, v)
}

func (a *args) time(name string) (time.Time, error) { return ParseTime(name, a.m[name]) }

func (a *args) int(name string) (int, error) {
	v := a.m[name]
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, ledger.Errorf(ledger.ECodeInvalid, "%s: %q is not a whole number", name, v)
	}
	return n, nil
}

func (a *args) bool(name string) (bool, error) {
	switch a.m[name] {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, ledger.Errorf(ledger.ECodeInvalid, "%s: %q is not true or false", name, a.m[name])
}

// first returns the first error.
func first(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// prepare checks a request's arguments and returns the query to run.
func (s *Service) prepare(action string, m map[string]string) (func(context.Context) (any, error), error) {
	a := &args{m: m}
	st := s.o.Store
	switch action {
	case "history":
		if err := a.known("user", "server", "ip", "logical", "from", "to", "open", "limit", "cursor"); err != nil {
			return nil, err
		}
		var q ledger.HistoryQuery
		var e [9]error
		q.User, e[0] = a.str("user", 256)
		q.Server, e[1] = a.str("server", 128)
		q.IP, e[2] = a.str("ip", 64)
		q.LogicalUID, e[3] = a.str("logical", 64)
		q.From, e[4] = a.time("from")
		q.To, e[5] = a.time("to")
		q.OpenOnly, e[6] = a.bool("open")
		q.Limit, e[7] = a.int("limit")
		q.Cursor, e[8] = a.str("cursor", 256)
		if err := first(append(e[:], q.Check())...); err != nil {
			return nil, err
		}
		if q.Cursor != "" {
			if _, err := ledger.DecodeCursor(q.Cursor); err != nil {
				return nil, err
			}
		}
		return func(ctx context.Context) (any, error) {
			p, err := st.History(ctx, q)
			if err != nil {
				return nil, err
			}
			return HistoryResult{Sessions: nonNil(p.Items), NextCursor: p.NextCursor}, nil
		}, nil
	case "who":
		if err := a.known("ip", "at", "kind"); err != nil {
			return nil, err
		}
		var q ledger.WhoQuery
		var e [3]error
		q.IP, e[0] = a.str("ip", 64)
		q.At, e[1] = a.time("at")
		q.Kind, e[2] = a.str("kind", 16)
		if err := first(append(e[:], q.Check())...); err != nil {
			return nil, err
		}
		return func(ctx context.Context) (any, error) {
			l, err := st.Who(ctx, q)
			if err != nil {
				return nil, err
			}
			return WhoResult{IP: q.IP, At: q.At, Sessions: nonNil(l)}, nil
		}, nil
	case "usage":
		if err := a.known("from", "to", "by", "user", "server", "per_server", "top"); err != nil {
			return nil, err
		}
		var q ledger.UsageQuery
		var e [7]error
		q.From, e[0] = a.time("from")
		q.To, e[1] = a.time("to")
		q.By, e[2] = a.str("by", 16)
		q.User, e[3] = a.str("user", 256)
		q.Server, e[4] = a.str("server", 128)
		q.PerServer, e[5] = a.bool("per_server")
		q.Top, e[6] = a.int("top")
		if err := first(append(e[:], q.Check(time.Now()))...); err != nil {
			return nil, err
		}
		// No row of the answer is shorter than usageRowBytes in JSON:
		// more rows than the message can hold are refused by the engine
		// as it reads, not after all of them are in memory.
		q.MaxRows = max(1000, int(s.maxPayload()/usageRowBytes))
		return func(ctx context.Context) (any, error) {
			rows, err := st.Usage(ctx, q)
			if err != nil {
				return nil, err
			}
			out := UsageResult{From: ledger.Day(q.From), To: ledger.Day(q.To), By: q.By, Rows: nonNil(rows)}
			if s.o.Policy != nil {
				if out.Limits, err = s.limitsOf(ctx, rows); err != nil {
					return nil, err
				}
			}
			return out, nil
		}, nil
	case "audit":
		if err := a.known("server", "action", "key", "refused", "from", "to", "limit", "cursor", "user", "actor"); err != nil {
			return nil, err
		}
		var q ledger.AuditQuery
		var e [10]error
		q.Server, e[0] = a.str("server", 128)
		q.Action, e[1] = a.str("action", 64)
		q.Key, e[2] = a.str("key", 128)
		q.Refused, e[3] = a.bool("refused")
		q.From, e[4] = a.time("from")
		q.To, e[5] = a.time("to")
		q.Limit, e[6] = a.int("limit")
		q.Cursor, e[7] = a.str("cursor", 256)
		q.User, e[8] = a.str("user", 256)
		q.Actor, e[9] = a.str("actor", 64)
		if err := first(append(e[:], q.Check())...); err != nil {
			return nil, err
		}
		return func(ctx context.Context) (any, error) {
			p, err := st.Audit(ctx, q)
			if err != nil {
				return nil, err
			}
			return AuditResult{Entries: nonNil(p.Items), NextCursor: p.NextCursor}, nil
		}, nil
	case "servers":
		if err := a.known(); err != nil {
			return nil, err
		}
		return func(ctx context.Context) (any, error) {
			l, err := st.Servers(ctx)
			if err != nil {
				return nil, err
			}
			return ServersResult{Servers: nonNil(l)}, nil
		}, nil
	case "session":
		if err := a.known("uid"); err != nil {
			return nil, err
		}
		uid, err := ledger.CheckUID("uid", a.m["uid"])
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (any, error) {
			x, samples, err := st.Session(ctx, uid)
			if err != nil {
				return nil, err
			}
			return SessionResult{Session: x, Samples: nonNil(samples)}, nil
		}, nil
	case "status":
		if err := a.known(); err != nil {
			return nil, err
		}
		return func(ctx context.Context) (any, error) {
			out := map[string]any{"engine": st.Engine()}
			if s.o.Status != nil {
				out["ingest"] = s.o.Status()
			}
			if p := s.o.Policy; p != nil && p.Stats != nil {
				out["policy"] = p.Stats()
			}
			if p, err := st.Position(ctx); err == nil {
				out["position"] = p
				out["database"] = "up"
			} else {
				out["database"] = "down: " + err.Error()
			}
			return out, nil
		}, nil
	}
	return nil, ledger.Errorf(ledger.ECodeNotFound, "unknown action %s", action)
}

// keyLabel names a key for the records: its name and the key.
// byLabel names who asked for a change: the key, and the person a
// service key acted for (the console's web user), both signed.
func byLabel(v opauth.Verified) string {
	if v.Cmd.Actor != "" {
		return keyLabel(v.Key) + " for " + v.Cmd.Actor
	}
	return keyLabel(v.Key)
}

func keyLabel(k opauth.TrustedKey) string {
	if k.Name != "" {
		return k.Name + " (" + k.Key + ")"
	}
	return k.Key
}

func nonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}
