// Package cmdsvc owns the command service: the NATS request/reply endpoints
// under <prefix>.cmd.<server_id>.<action> through which operators manage one
// ocserv host, built on nats.go's micro package (so `nats micro ls`,
// $SRV.PING/INFO/STATS and `ctl servers` find every server). Each request
// passes the security layer of package opauth (signature, trusted key and
// role, validity in time, replay), then the action's argument checks, and
// only then runs, through occtl (argv only, never a shell), the kick list or
// the firewall. Every command that runs, and every refusal of a command
// signed by a trusted key, becomes an audit event through the spool; other
// refusals (which anyone who can publish can cause) up to a rate, counted
// beyond it. docs/commands.md is the reference.
package cmdsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/firewall"
	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/bucket"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// ServiceName is the micro service's name; every server registers one
// instance of it, told apart by the server_id in its metadata.
const ServiceName = "ocserv-telemetry"

// APIVersion is the micro service version (SemVer): the version of the
// command API, not of the build (that is in metadata "build").
const APIVersion = "1.0.0"

// Metadata keys of the service instance.
const (
	MetaServerID = "server_id"
	MetaXKey     = "xkey" // curve public key to seal secrets to
	MetaPrefix   = "prefix"
	MetaBuild    = "build"
)

// Error codes of actions (refusal codes of the security layer are in
// opauth).
const (
	CodeInvalidArgument = "invalid_argument"
	CodeNotFound        = "not_found"
	CodeUnsupported     = "unsupported"
	CodeFailed          = "failed"
	CodeAuditFailed     = "audit_unavailable"
)

// Reply is the body of every answer.
type Reply struct {
	OK       bool            `json:"ok"`
	ServerID string          `json:"server_id"`
	Action   string          `json:"action"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *ReplyError     `json:"error,omitempty"`
}

// ReplyError says why a command was refused or failed.
type ReplyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Failure is an action's error with its code.
type Failure struct {
	Code string
	Msg  string
}

func (f *Failure) Error() string { return f.Code + ": " + f.Msg }

func fail(code, format string, a ...any) *Failure {
	return &Failure{Code: code, Msg: fmt.Sprintf(format, a...)}
}

// Options configure a Service.
type Options struct {
	NC       *nats.Conn
	Prefix   string
	ServerID string
	Verifier *opauth.Verifier
	// XKey is this server's curve key pair; operators seal secrets to
	// its public key, published in the service metadata.
	XKey nkeys.KeyPair
	// Occtl runs occtl; OcservPath is ocserv's binary for its version.
	Occtl      *ocserv.Occtl
	OcservPath string
	// Spool takes the audit events; its directory holds the kick list.
	Spool                  *spool.Spool
	RefusalAuditsPerMinute int
	// RemoveAllRules removes every firewall rule the hook made; nil means
	// both real backends (firewall.Open).
	RemoveAllRules func(ctx context.Context) error
	// InboxPrefixes are the subject prefixes a reply may go to (default
	// "_INBOX", nats.go's): a request naming any other reply subject is
	// dropped unanswered and audited, so nobody can make this service
	// publish into another host's subjects or the JetStream API.
	InboxPrefixes []string
	// Timeout bounds one action (default 30s).
	Timeout time.Duration
	Log     *slog.Logger
	Build   string
	// Extra actions (user and config management) registered beside the
	// built-in ones.
	Extra []Action
	// Policy, when set, adds the verdicts mirror's state to the status
	// actions (POLICY=on).
	Policy *PolicyStatus
}

// PolicyStatus is how status reads the verdicts mirror.
type PolicyStatus struct {
	MaxAge time.Duration
	Stale  string
}

// Action is one endpoint.
type Action struct {
	Name   string
	Role   opauth.Role
	Params []Param
	Desc   string
	// Check, when set, validates the arguments as a whole (e.g. exactly
	// one of user or id) before anything is run or audited as accepted.
	Check func(args map[string]string) error
	Run   func(ctx context.Context, r *Request) (any, error)
}

// Param is one argument of an action.
type Param struct {
	Name     string
	Required bool
	Check    func(string) (string, error)
	// NotSecret keeps the value in audits although the name suggests a
	// secret (SecretName): config-set's "key" is the name of an ocserv
	// setting, which the audit must show.
	NotSecret bool
}

// Request is a verified command with validated arguments.
type Request struct {
	Args map[string]string
	Key  opauth.TrustedKey
	Cmd  *opauth.Command
	// Open returns a sealed secret argument (e.g. "password").
	Open func(name string) ([]byte, error)
}

// Service is a running command service.
type Service struct {
	o       Options
	svc     micro.Service
	au      *auditor
	actions map[string]*Action
	xpub    string

	verOnce sync.Once
	ver     ocserv.Version
	verErr  error
}

// Start registers the service and its endpoints on o.NC.
func Start(o Options) (*Service, error) {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Occtl == nil {
		o.Occtl = &ocserv.Occtl{}
	}
	if o.RemoveAllRules == nil {
		o.RemoveAllRules = removeAllRules
	}
	if len(o.InboxPrefixes) == 0 {
		o.InboxPrefixes = []string{DefaultInboxPrefix}
	}
	xpub, err := o.XKey.PublicKey()
	if err != nil || !nkeys.IsValidPublicCurveKey(xpub) {
		return nil, fmt.Errorf("command service: the server key must be a curve key (seed SX…)")
	}
	s := &Service{o: o, au: newAuditor(o.Spool, o.ServerID, o.RefusalAuditsPerMinute, o.Log), xpub: xpub,
		actions: map[string]*Action{}}
	for _, a := range append(s.builtin(), o.Extra...) {
		a := a
		if _, dup := s.actions[a.Name]; dup {
			return nil, fmt.Errorf("command service: action %s registered twice", a.Name)
		}
		s.actions[a.Name] = &a
	}
	s.svc, err = micro.AddService(o.NC, micro.Config{
		Name:        ServiceName,
		Version:     APIVersion,
		Description: "ocserv-telemetry command service (signed, audited operator commands)",
		Metadata: map[string]string{
			MetaServerID: o.ServerID, MetaXKey: xpub, MetaPrefix: o.Prefix, MetaBuild: o.Build,
		},
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			o.Log.Warn("command service: nats error", "subject", e.Subject, "err", e.Description)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("command service: %w", err)
	}
	g := s.svc.AddGroup(Subject(o.Prefix, o.ServerID, ""))
	for _, a := range s.actions {
		a := a
		meta := map[string]string{"role": string(a.Role), "args": paramNamesP(a.Params), "description": a.Desc}
		if err := g.AddEndpoint(a.Name, micro.HandlerFunc(func(r micro.Request) { s.handle(a, r) }),
			micro.WithEndpointMetadata(meta)); err != nil {
			s.svc.Stop()
			return nil, fmt.Errorf("command service: endpoint %s: %w", a.Name, err)
		}
	}
	// The subscriptions are live at the server when Start returns.
	if err := o.NC.FlushTimeout(5 * time.Second); err != nil && o.NC.IsConnected() {
		o.Log.Warn("command service: flush after registering", "err", err.Error())
	}
	return s, nil
}

// DefaultInboxPrefix is nats.go's inbox prefix (nats.InboxPrefix
// without its dot).
const DefaultInboxPrefix = "_INBOX"

// CodeBadReply: the request names a reply subject outside the inbox
// prefixes. Such a request gets no answer; the code is in its audit.
const CodeBadReply = "bad_reply_subject"

// inboxReply reports whether reply is under one of the inbox prefixes.
func (s *Service) inboxReply(reply string) bool { return InboxReply(reply, s.o.InboxPrefixes) }

// InboxReply reports whether reply is under one of prefixes: a prefix's
// tokens, then at least one more. Every service answering signed requests
// (this one, the ledger's queries) drops a request whose reply subject is
// not, so nobody can make it publish where they choose.
func InboxReply(reply string, prefixes []string) bool {
	for _, p := range prefixes {
		if len(reply) > len(p)+1 && strings.HasPrefix(reply, p) && reply[len(p)] == '.' {
			return true
		}
	}
	return false
}

// Subject is <prefix>.cmd.<server_id>.<action> (without the action when
// action is "").
func Subject(prefix, serverID, action string) string {
	s := prefix + ".cmd." + serverID
	if action != "" {
		s += "." + action
	}
	return s
}

// XKey is the public curve key secrets are sealed to.
func (s *Service) XKey() string { return s.xpub }

// Stop drains the endpoints.
func (s *Service) Stop() error { return s.svc.Stop() }

// Actions lists the registered action names.
func (s *Service) Actions() []string {
	var out []string
	for n := range s.actions {
		out = append(out, n)
	}
	return out
}

func (s *Service) handle(a *Action, r micro.Request) {
	start := time.Now()
	subject := r.Subject()
	if reply := r.Reply(); !s.inboxReply(reply) {
		// Answering would publish where the sender chose: drop it. No
		// check ran, so nothing of the request is trusted in the audit.
		au := Audit{Action: a.Name, Subject: truncate(subject, 256), Reply: truncate(strings.ToValidUTF8(reply, "?"), 256),
			Code: CodeBadReply, Message: fmt.Sprintf("reply subject %q is not under the inbox prefixes (%s); request dropped unanswered",
				truncate(strings.ToValidUTF8(reply, "?"), 256), strings.Join(s.o.InboxPrefixes, ", "))}
		if s.au.refused(au, CodeBadReply, reply, fmt.Sprint(start.UnixNano())) {
			s.o.Log.Warn("command dropped: reply subject outside the inbox prefixes", "action", a.Name, "reply", au.Reply)
		}
		return
	}
	ver, rerr := s.o.Verifier.Check(subject, a.Name, a.Role, r.Data())
	au := Audit{Action: a.Name, Subject: truncate(subject, 256)}
	fill(&au, ver, a.Params)
	if rerr != nil {
		s.refuse(r, a, au, ver, rerr)
		return
	}
	cmd := ver.Cmd
	idKey, idNonce := cmd.Key, cmd.Nonce
	args, err := checkArgs(toParams(a.Params), cmd.Args)
	if err == nil && a.Check != nil {
		err = a.Check(args)
	}
	if err != nil {
		// Signed by a trusted key within its rate, not a replay: always
		// audited. The nonce is not consumed: the command did not run.
		au.OK, au.Phase, au.Code, au.Message = false, PhaseRefused, CodeInvalidArgument, err.Error()
		if werr := s.au.write(au, idKey, idNonce); werr != nil {
			s.o.Log.Error("cannot write audit event", "err", werr.Error())
		}
		s.respondErr(r, a.Name, CodeInvalidArgument, err.Error())
		return
	}
	// The last check: the nonce, recorded durably before anything runs.
	if rerr := s.o.Verifier.Consume(ver); rerr != nil {
		s.refuse(r, a, au, ver, rerr)
		return
	}
	if a.Role == opauth.ReadWrite {
		au.Phase, au.OK = PhaseAccepted, true
		if err := s.au.write(au, idKey, idNonce); err != nil {
			s.o.Log.Error("command not run: its audit event cannot be written", "action", a.Name, "err", err.Error())
			s.respondErr(r, a.Name, CodeAuditFailed, "the command was not run: its audit event cannot be written to the spool ("+err.Error()+")")
			return
		}
	}
	req := &Request{Args: args, Key: ver.Key, Cmd: cmd, Open: func(name string) ([]byte, error) {
		return opauth.Open(s.o.XKey, cmd.Args, name)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	res, err := a.Run(ctx, req)
	cancel()
	au.Phase, au.ElapsedMS = PhaseDone, time.Since(start).Milliseconds()
	var body []byte
	if err == nil {
		body, err = json.Marshal(res)
	}
	if err != nil {
		f := asFailure(err)
		au.OK, au.Code, au.Message = false, f.Code, f.Msg
		s.writeDone(au, idKey, idNonce)
		s.o.Log.Info("command failed", "action", a.Name, "key", cmd.Key, "code", f.Code, "msg", f.Msg)
		s.respondErr(r, a.Name, f.Code, f.Msg)
		return
	}
	au.OK = true
	s.writeDone(au, idKey, idNonce)
	if a.Role == opauth.ReadWrite {
		s.o.Log.Info("command run", "action", a.Name, "key", cmd.Key, "name", ver.Key.Name)
	}
	s.respond(r, Reply{OK: true, ServerID: s.o.ServerID, Action: a.Name, Result: body})
}

// refuse audits a refusal of the security layer (rate-limited) and
// answers it.
func (s *Service) refuse(r micro.Request, a *Action, au Audit, ver opauth.Verified, rerr *opauth.Error) {
	au.Code, au.Message = rerr.Code, rerr.Msg
	key, nonce := "", ""
	if ver.Cmd != nil {
		key, nonce = ver.Cmd.Key, ver.Cmd.Nonce
	}
	// A reply subject is unique per request, so two refusals of one
	// replayed message are two facts.
	if s.au.refused(au, key, nonce, rerr.Code, r.Reply()) {
		// Logged like it is audited: a flood of refusals must not fill
		// the journal either.
		s.o.Log.Warn("command refused", "action", a.Name, "code", rerr.Code, "key", au.Key, "msg", rerr.Msg)
	}
	s.respondErr(r, a.Name, rerr.Code, rerr.Msg)
}

func (s *Service) writeDone(au Audit, key, nonce string) {
	if err := s.au.write(au, key, nonce); err != nil {
		s.o.Log.Error("cannot write audit event", "action", au.Action, "err", err.Error())
	}
}

func (s *Service) respond(r micro.Request, rep Reply) {
	b, _ := json.Marshal(rep)
	if err := r.Respond(b); err != nil {
		s.o.Log.Warn("command service: reply failed", "err", err.Error())
	}
}

// respondErr answers with micro's error headers (code, description) and
// the same in the body.
func (s *Service) respondErr(r micro.Request, action, code, msg string) {
	b, _ := json.Marshal(Reply{ServerID: s.o.ServerID, Action: action, Error: &ReplyError{Code: code, Message: msg}})
	if err := r.Error(code, msg, b); err != nil {
		s.o.Log.Warn("command service: reply failed", "err", err.Error())
	}
}

func asFailure(err error) *Failure {
	var f *Failure
	switch {
	case errors.As(err, &f):
		return f
	case errors.Is(err, ocserv.ErrNotFound):
		return &Failure{Code: CodeNotFound, Msg: err.Error()}
	case errors.Is(err, ocserv.ErrUnsupported):
		return &Failure{Code: CodeUnsupported, Msg: err.Error()}
	case errors.Is(err, ocserv.ErrInvalidArgument):
		return &Failure{Code: CodeInvalidArgument, Msg: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &Failure{Code: CodeFailed, Msg: "timed out: " + err.Error()}
	}
	return &Failure{Code: CodeFailed, Msg: err.Error()}
}

func toParams(ps []Param) []param {
	out := make([]param, len(ps))
	for i, p := range ps {
		out[i] = param{name: p.Name, required: p.Required, check: p.Check}
	}
	return out
}

func paramNamesP(ps []Param) string { return paramNames(toParams(ps)) }

// version is ocserv's, detected once.
func (s *Service) version(ctx context.Context) (ocserv.Version, error) {
	s.verOnce.Do(func() { s.ver, s.verErr = s.o.Occtl.DetectVersion(ctx, s.o.OcservPath) })
	return s.ver, s.verErr
}

func removeAllRules(ctx context.Context) error {
	var errs []error
	done := 0
	for _, kind := range []string{firewall.KindNftables, firewall.KindIptables} {
		b, err := firewall.Open(kind)
		if err != nil {
			continue // this backend is not available here: nothing of ours in it
		}
		if err := b.RemoveAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", kind, err))
		}
		done++
	}
	if done == 0 {
		return fail(CodeUnsupported, "neither nftables nor iptables is available on this host")
	}
	return errors.Join(errs...)
}

// Read-only and read-write actions built on occtl, the kick list, the
// spool and the firewall.
func (s *Service) builtin() []Action {
	oc := s.o.Occtl
	user := Param{Name: "user", Required: true, Check: ValidName}
	ro, rw := opauth.ReadOnly, opauth.ReadWrite
	return []Action{
		{Name: "status", Role: ro, Desc: "occtl show status, ocserv version, spool status", Run: func(ctx context.Context, r *Request) (any, error) {
			st, err := oc.ShowStatus(ctx)
			if err != nil {
				return nil, err
			}
			out := map[string]any{"server_id": s.o.ServerID, "xkey": s.xpub, "ocserv": st}
			if v, err := s.version(ctx); err == nil {
				out["ocserv_version"] = v.String()
			}
			if sp, err := ReadSpoolStatus(s.o.Spool.Dir()); err == nil {
				s.policyReport(sp)
				out["spool"] = sp
			}
			return out, nil
		}},
		{Name: "users", Role: ro, Desc: "occtl show users", Run: func(ctx context.Context, r *Request) (any, error) {
			return oc.ShowUsers(ctx)
		}},
		{Name: "user", Role: ro, Params: []Param{user}, Desc: "occtl show user NAME", Run: func(ctx context.Context, r *Request) (any, error) {
			u, found, err := oc.ShowUser(ctx, r.Args["user"])
			if err == nil && !found {
				return nil, fail(CodeNotFound, "user %s has no session on this server", r.Args["user"])
			}
			return u, err
		}},
		{Name: "id", Role: ro, Params: []Param{{Name: "id", Required: true, Check: validID}}, Desc: "occtl show id ID", Run: func(ctx context.Context, r *Request) (any, error) {
			id, _ := strconv.Atoi(r.Args["id"])
			u, found, err := oc.ShowID(ctx, id)
			if err == nil && !found {
				return nil, fail(CodeNotFound, "no worker with ID %d on this server", id)
			}
			return u, err
		}},
		{Name: "sessions", Role: ro, Params: []Param{{Name: "valid", Check: validBool}}, Desc: "occtl show sessions all|valid", Run: func(ctx context.Context, r *Request) (any, error) {
			return oc.ShowSessions(ctx, r.Args["valid"] == "true")
		}},
		{Name: "session", Role: ro, Params: []Param{{Name: "sid", Required: true, Check: validSID}}, Desc: "occtl show session SID", Run: func(ctx context.Context, r *Request) (any, error) {
			ss, found, err := oc.ShowSession(ctx, r.Args["sid"])
			if err == nil && !found {
				return nil, fail(CodeNotFound, "no session %s on this server", r.Args["sid"])
			}
			return ss, err
		}},
		{Name: "iroutes", Role: ro, Desc: "occtl show iroutes", Run: func(ctx context.Context, r *Request) (any, error) {
			return oc.ShowIRoutes(ctx)
		}},
		{Name: "bans", Role: ro, Desc: "occtl show ip bans", Run: func(ctx context.Context, r *Request) (any, error) {
			return oc.ShowIPBans(ctx)
		}},
		{Name: "ban-points", Role: ro, Desc: "occtl show ip ban points", Run: func(ctx context.Context, r *Request) (any, error) {
			return oc.ShowIPBanPoints(ctx)
		}},
		{Name: "spool-status", Role: ro, Desc: "the spool's backlog, the shipper's status, the verdicts mirror's state", Run: func(ctx context.Context, r *Request) (any, error) {
			sp, err := ReadSpoolStatus(s.o.Spool.Dir())
			if err == nil {
				s.policyReport(sp)
			}
			return sp, err
		}},
		{Name: "kicked", Role: ro, Desc: "the kick list", Run: func(ctx context.Context, r *Request) (any, error) {
			l, err := kick.List(s.o.Spool.Dir())
			if l == nil {
				l = []kick.Entry{}
			}
			return l, err
		}},
		{Name: "disconnect", Role: rw, Params: []Param{{Name: "user", Check: ValidName}, {Name: "id", Check: validID}, {Name: "if_user", Check: ValidName}},
			Desc:  "occtl disconnect user NAME | id ID [if_user NAME: only if that worker is still NAME's] (the client may come back with its cookie; see kick)",
			Check: checkDisconnect,
			Run: func(ctx context.Context, r *Request) (any, error) {
				u, id, err := userOrID(r.Args)
				if err != nil {
					return nil, err
				}
				if want := r.Args["if_user"]; want != "" {
					// Worker IDs are PIDs, reused: the caller's view of
					// who holds one may be out of date.
					w, found, err := oc.ShowID(ctx, id)
					if err != nil {
						return nil, err
					}
					if !found || w.Username != want {
						return nil, fail(CodeNotFound, "worker %d is not %s's session (any more); nothing disconnected", id, want)
					}
				}
				if u != "" {
					_, err = oc.DisconnectUser(ctx, u)
				} else {
					_, err = oc.DisconnectID(ctx, id)
				}
				return map[string]bool{"disconnected": err == nil}, err
			}},
		{Name: "terminate", Role: rw, Params: []Param{{Name: "user", Check: ValidName}, {Name: "id", Check: validID}},
			Desc:  "occtl terminate user NAME | id ID: disconnect and invalidate the cookie (ocserv 1.4.2+)",
			Check: checkUserOrID,
			Run: func(ctx context.Context, r *Request) (any, error) {
				u, id, err := userOrID(r.Args)
				if err != nil {
					return nil, err
				}
				if v, verr := s.version(ctx); verr == nil && !v.HasTerminate() {
					return nil, fail(CodeUnsupported, "ocserv %s has no terminate (it arrived in 1.4.2); use kick, which sticks on every version", v)
				}
				if u != "" {
					_, err = oc.TerminateUser(ctx, u)
				} else {
					_, err = oc.TerminateID(ctx, id)
				}
				if errors.Is(err, ocserv.ErrUnsupported) {
					return nil, fail(CodeUnsupported, "this occtl has no terminate (ocserv 1.4.2+); use kick, which sticks on every version")
				}
				return map[string]bool{"terminated": err == nil}, err
			}},
		{Name: "kick", Role: rw,
			Params: []Param{user, {Name: "reason", Check: validText}, {Name: "for", Check: validDuration}},
			Desc:   "put the user on the kick list (the hook refuses every connect, cookie resumptions included) and disconnect their sessions",
			Run: func(ctx context.Context, r *Request) (any, error) {
				e := kick.Entry{User: r.Args["user"], Reason: r.Args["reason"], At: time.Now().UTC(), By: keyLabel(r.Key)}
				if d := r.Args["for"]; d != "" {
					dd, _ := time.ParseDuration(d)
					until := e.At.Add(dd)
					e.Until = &until
				}
				out := map[string]any{"kicked": true, "until": e.Until}
				if r.Key.Role == opauth.Policy {
					e.Source = kick.SourcePolicy
				}
				if held, _ := kick.Check(s.o.Spool.Dir(), e.User, e.At); e.Source == kick.SourcePolicy && held != nil && held.Source != kick.SourcePolicy {
					// An operator's kick stands as it is: the policy must
					// neither shorten it nor, by lifting its own later,
					// end it.
					out["kept_operator_kick"] = true
				} else if err := kick.Add(s.o.Spool.Dir(), e); err != nil {
					return nil, err
				}
				_, err := oc.DisconnectUser(ctx, e.User)
				switch {
				case errors.Is(err, ocserv.ErrNotFound):
					out["disconnected"] = false
					return out, nil
				case err != nil:
					return nil, fail(CodeFailed, "%s is on the kick list (new connects are refused), but disconnecting the current sessions failed: %v", e.User, err)
				}
				out["disconnected"] = true
				return out, nil
			}},
		{Name: "unkick", Role: rw, Params: []Param{user}, Desc: "take the user off the kick list (the policy key: only its own kicks)", Run: func(ctx context.Context, r *Request) (any, error) {
			u := r.Args["user"]
			if r.Key.Role == opauth.Policy {
				if held, _ := kick.Check(s.o.Spool.Dir(), u, time.Now()); held != nil && held.Source != kick.SourcePolicy {
					return map[string]any{"unkicked": false, "kept_operator_kick": true}, nil
				}
			}
			ok, err := kick.Remove(s.o.Spool.Dir(), u)
			if err == nil && !ok {
				return nil, fail(CodeNotFound, "%s is not on the kick list", u)
			}
			return map[string]bool{"unkicked": ok}, err
		}},
		{Name: "unban", Role: rw, Params: []Param{{Name: "ip", Required: true, Check: validIP}}, Desc: "occtl unban ip IP", Run: func(ctx context.Context, r *Request) (any, error) {
			ip := netip.MustParseAddr(r.Args["ip"])
			_, err := oc.UnbanIP(ctx, ip)
			return map[string]bool{"unbanned": err == nil}, err
		}},
		{Name: "reload", Role: rw, Desc: "occtl reload (ocserv reports success whatever happens next)", Run: func(ctx context.Context, r *Request) (any, error) {
			rep, err := oc.Reload(ctx)
			return map[string]string{"output": string(rep.Stdout)}, err
		}},
		{Name: "firewall-removeall", Role: rw, Desc: "remove every firewall rule and chain the hook made (both backends)", Run: func(ctx context.Context, r *Request) (any, error) {
			err := s.o.RemoveAllRules(ctx)
			return map[string]bool{"removed": err == nil}, err
		}},
	}
}

func (s *Service) policyReport(sp *SpoolStatus) {
	if p := s.o.Policy; p != nil {
		r := bucket.ReadReport(s.o.Spool.Dir(), p.MaxAge, p.Stale, time.Now())
		sp.Policy = &r
	}
}

func checkDisconnect(args map[string]string) error {
	if err := checkUserOrID(args); err != nil {
		return err
	}
	if _, ok := args["if_user"]; ok && args["id"] == "" {
		return errors.New("if_user goes with id (a disconnect by user name needs no guard)")
	}
	return nil
}

func checkUserOrID(args map[string]string) error {
	_, hasU := args["user"]
	_, hasID := args["id"]
	if hasU == hasID {
		return errors.New("give exactly one of the arguments user or id")
	}
	return nil
}

func userOrID(args map[string]string) (string, int, error) {
	if err := checkUserOrID(args); err != nil {
		return "", 0, fail(CodeInvalidArgument, "%v", err)
	}
	id, _ := strconv.Atoi(args["id"])
	return args["user"], id, nil
}

func keyLabel(k opauth.TrustedKey) string {
	if k.Name != "" {
		return k.Name + " (" + k.Key + ")"
	}
	return k.Key
}
