package ocserv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults of Occtl.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultMaxOutput = 16 << 20 // show users with thousands of sessions stays far below
	maxStderr        = 64 << 10
)

// Occtl runs occtl. The zero value runs "occtl" from PATH against its
// compiled-in socket. occtl's socket is root-only, so the caller must run
// as root (or through a Launcher that gets there).
type Occtl struct {
	Path   string // occtl binary; "" means "occtl"
	Socket string // -s; "" means occtl's default

	// Launcher is prepended to every command line, argv only, e.g.
	// {"ip", "netns", "exec", "ns1"}: occtl reads the tun devices'
	// counters through netlink, so it must run in ocserv's namespace.
	Launcher []string

	Timeout   time.Duration // per command; 0 means DefaultTimeout
	MaxOutput int           // stdout cap in bytes; 0 means DefaultMaxOutput

	// Location is the time zone occtl printed local times in (the
	// server's); nil means time.Local.
	Location *time.Location

	// OnNote, when set, receives every repair and conversion note made
	// while reading a command's output (for logs and metrics).
	OnNote func(command string, n Note)
}

// Reply is what one occtl command printed and how it exited.
type Reply struct {
	Command  string // "occtl show users" (without -s and -j)
	Stdout   []byte
	Stderr   string // capped at 64 KiB
	ExitCode int
}

// Errors to test with errors.Is.
var (
	// ErrNotFound: the user, ID or address named in a command is not
	// known (disconnect, unban, terminate).
	ErrNotFound = errors.New("not found")
	// ErrUnsupported: this occtl does not know the command ("unknown
	// command", e.g. terminate before 1.4.2).
	ErrUnsupported = errors.New("command not supported by this occtl")
	// ErrInvalidArgument: a name, ID or address that must not be passed
	// to occtl.
	ErrInvalidArgument = errors.New("invalid argument")
)

// CommandError is an occtl command that exited non-zero (or printed that
// it failed). Its message names the command, the exit status and the
// first line(s) of its stderr (or stdout when stderr is empty).
type CommandError struct {
	Command string
	Reply   Reply
	// Kind is ErrNotFound, ErrUnsupported or nil.
	Kind error
}

func (e *CommandError) Error() string {
	msg := strings.TrimSpace(e.Reply.Stderr)
	if msg == "" {
		msg = strings.TrimSpace(string(e.Reply.Stdout))
	}
	msg = oneLine(msg, 300)
	if msg == "" {
		msg = "no output"
	}
	return fmt.Sprintf("%s: exit %d: %s", e.Command, e.Reply.ExitCode, msg)
}

func (e *CommandError) Unwrap() error { return e.Kind }

// oneLine folds text into one line of at most n bytes for messages.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		i := n
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i] + "…"
	}
	return s
}

// capped keeps the first max bytes and counts the rest, so an endless
// writer is neither stored nor blocked (blocking it would hang it on a
// full pipe until the timeout).
type capped struct {
	buf      bytes.Buffer
	max      int
	overflow int64
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - c.buf.Len()
	if room >= len(p) {
		c.buf.Write(p)
		return len(p), nil
	}
	if room > 0 {
		c.buf.Write(p[:room])
	}
	c.overflow += int64(len(p) - max(room, 0))
	return len(p), nil
}

func (o *Occtl) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

// exec runs argv with the timeout and caps; a non-zero exit is in the
// Reply, not an error. Errors are failures to run or finish.
func (o *Occtl) exec(ctx context.Context, name string, argv []string) (Reply, error) {
	rep := Reply{Command: name}
	limit := o.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// A grandchild holding the pipes open must not stretch the timeout.
	cmd.WaitDelay = time.Second
	stdout := &capped{max: limit}
	stderr := &capped{max: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	rep.Stdout = stdout.buf.Bytes()
	rep.Stderr = stderr.buf.String()
	// Only a command that failed can have been stopped by the context; one
	// that finished just before the deadline keeps its answer.
	if err != nil && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return rep, fmt.Errorf("%s: no answer within %s (killed)", name, o.timeout())
		}
		return rep, fmt.Errorf("%s: %w", name, ctx.Err())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		rep.ExitCode = ee.ExitCode()
		if rep.ExitCode < 0 {
			return rep, fmt.Errorf("%s: %v: %s", name, ee, oneLine(rep.Stderr, 300))
		}
	case err != nil:
		return rep, fmt.Errorf("%s: %w", name, err)
	}
	if stdout.overflow > 0 {
		return rep, fmt.Errorf("%s: output larger than %d bytes (%d more); not read", name, limit, stdout.overflow)
	}
	return rep, nil
}

// run runs occtl [-s socket] [-j] args.
func (o *Occtl) run(ctx context.Context, json bool, args ...string) (Reply, error) {
	path := o.Path
	if path == "" {
		path = "occtl"
	}
	argv := append([]string{}, o.Launcher...)
	argv = append(argv, path)
	if o.Socket != "" {
		argv = append(argv, "-s", o.Socket)
	}
	if json {
		argv = append(argv, "-j")
	}
	argv = append(argv, args...)
	return o.exec(ctx, "occtl "+strings.Join(args, " "), argv)
}

// classify turns a non-zero exit into a CommandError, recognising occtl's
// "unknown command" (ErrUnsupported).
func classify(rep Reply) error {
	if rep.ExitCode == 0 {
		return nil
	}
	e := &CommandError{Command: rep.Command, Reply: rep}
	if strings.Contains(rep.Stderr, "unknown command") || strings.Contains(string(rep.Stdout), "unknown command") {
		e.Kind = ErrUnsupported
	}
	return e
}

// runJSON runs a -j command and parses its output with parse. notFoundOK
// marks commands (show user/id/session) for which occtl's "[ ]" plus exit 2
// means "no such entry"; found is then false and err nil.
func runJSON[T any](ctx context.Context, o *Occtl, notFoundOK bool, parse func([]byte) (T, []Note, error), empty func(T) bool, args ...string) (val T, found bool, err error) {
	rep, err := o.run(ctx, true, args...)
	if err != nil {
		return val, false, err
	}
	if rep.ExitCode != 0 && !(notFoundOK && rep.ExitCode == 2) {
		return val, false, classify(rep)
	}
	v, notes, err := parse(rep.Stdout)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Command = rep.Command
			if rep.ExitCode != 0 {
				// Exit 2 with output that is not an empty list: report the
				// exit, it says more than the syntax.
				return val, false, classify(rep)
			}
			return val, false, pe
		}
		return val, false, fmt.Errorf("%s: %w", rep.Command, err)
	}
	if o.OnNote != nil {
		for _, n := range notes {
			o.OnNote(rep.Command, n)
		}
	}
	if notFoundOK && empty(v) {
		return v, false, nil
	}
	if rep.ExitCode != 0 {
		return val, false, classify(rep)
	}
	return v, true, nil
}

func (o *Occtl) loc() *time.Location {
	if o.Location != nil {
		return o.Location
	}
	return time.Local
}

func (o *Occtl) users(ctx context.Context, notFoundOK bool, args ...string) ([]User, bool, error) {
	return runJSON(ctx, o, notFoundOK, func(b []byte) ([]User, []Note, error) { return ParseUsers(b, o.loc()) },
		func(u []User) bool { return len(u) == 0 }, args...)
}

// ShowUsers runs show users: every worker, connected or authenticating.
func (o *Occtl) ShowUsers(ctx context.Context) ([]User, error) {
	// Exit 2 with an empty list is accepted as "nobody": occtl's shared
	// printer returns 2 whenever it printed no user.
	u, _, err := o.users(ctx, true, "show", "users")
	return u, err
}

// ShowUser runs show user NAME. found is false (err nil) when the user has
// no session: occtl prints "[ ]" and exits 2 then. A user can have several
// sessions, hence the slice.
func (o *Occtl) ShowUser(ctx context.Context, name string) (users []User, found bool, err error) {
	if err := ValidUsername(name); err != nil {
		return nil, false, fmt.Errorf("occtl show user: %w", err)
	}
	return o.users(ctx, true, "show", "user", name)
}

// ShowID runs show id ID; found is false (err nil) for an unknown ID.
func (o *Occtl) ShowID(ctx context.Context, id int) (user User, found bool, err error) {
	if err := ValidID(id); err != nil {
		return User{}, false, fmt.Errorf("occtl show id: %w", err)
	}
	us, found, err := o.users(ctx, true, "show", "id", strconv.Itoa(id))
	if err != nil || !found {
		return User{}, found, err
	}
	if len(us) != 1 || us[0].ID != id {
		return User{}, false, fmt.Errorf("occtl show id %d: %d entries, first ID %d; expected exactly ID %d", id, len(us), us[0].ID, id)
	}
	return us[0], true, nil
}

// ShowStatus runs show status.
func (o *Occtl) ShowStatus(ctx context.Context) (Status, error) {
	s, _, err := runJSON(ctx, o, false, func(b []byte) (Status, []Note, error) { return ParseStatus(b, o.loc()) },
		nil, "show", "status")
	return s, err
}

// ShowSessions runs show sessions all (valid=false) or show sessions valid
// (only the cookies a client can still reconnect with).
func (o *Occtl) ShowSessions(ctx context.Context, valid bool) ([]Session, error) {
	which := "all"
	if valid {
		which = "valid"
	}
	s, _, err := runJSON(ctx, o, false, func(b []byte) ([]Session, []Note, error) { return ParseSessions(b, o.loc()) },
		nil, "show", "sessions", which)
	return s, err
}

// ShowSession runs show session SID (the short or full session id);
// found is false (err nil) for an unknown one.
func (o *Occtl) ShowSession(ctx context.Context, sid string) (s Session, found bool, err error) {
	if err := ValidSessionID(sid); err != nil {
		return Session{}, false, fmt.Errorf("occtl show session: %w", err)
	}
	ss, found, err := runJSON(ctx, o, true, func(b []byte) ([]Session, []Note, error) { return ParseSessions(b, o.loc()) },
		func(s []Session) bool { return len(s) == 0 }, "show", "session", sid)
	if err != nil || !found {
		return Session{}, found, err
	}
	if len(ss) != 1 {
		return Session{}, false, fmt.Errorf("occtl show session %s: %d entries, expected one", sid, len(ss))
	}
	return ss[0], true, nil
}

// ShowIRoutes runs show iroutes.
func (o *Occtl) ShowIRoutes(ctx context.Context) ([]IRoute, error) {
	r, _, err := runJSON(ctx, o, false, ParseIRoutes, nil, "show", "iroutes")
	return r, err
}

// ShowIPBans runs show ip bans: addresses banned now.
func (o *Occtl) ShowIPBans(ctx context.Context) ([]Ban, error) {
	b, _, err := runJSON(ctx, o, false, func(b []byte) ([]Ban, []Note, error) { return ParseBans(b, o.loc()) },
		nil, "show", "ip", "bans")
	return b, err
}

// ShowIPBanPoints runs show ip ban points: every address with points.
func (o *Occtl) ShowIPBanPoints(ctx context.Context) ([]Ban, error) {
	b, _, err := runJSON(ctx, o, false, func(b []byte) ([]Ban, []Note, error) { return ParseBans(b, o.loc()) },
		nil, "show", "ip", "ban", "points")
	return b, err
}

// text runs a plain-text command. A non-zero exit, or output starting
// with failPrefix (occtl 1.1.6 prints "could not disconnect user 'x'"
// even where it exits 0), is a *CommandError; with notFound set, occtl's
// own "could not …" answer is ErrNotFound (other failures, such as an
// unreachable server, are not: they print to stderr).
func (o *Occtl) text(ctx context.Context, notFound bool, failPrefix string, args ...string) (Reply, error) {
	rep, err := o.run(ctx, false, args...)
	if err != nil {
		return rep, err
	}
	said := strings.HasPrefix(strings.TrimSpace(string(rep.Stdout)), failPrefix)
	if rep.ExitCode == 0 && !said {
		return rep, nil
	}
	ce := &CommandError{Command: rep.Command, Reply: rep}
	if c, ok := classify(rep).(*CommandError); ok {
		ce = c
	}
	if ce.Kind == nil && notFound && said {
		ce.Kind = ErrNotFound
	}
	return rep, ce
}

// DisconnectUser runs disconnect user NAME. The session cookie stays
// valid: the client can reconnect without a password (see Terminate*).
// Unknown users are ErrNotFound.
func (o *Occtl) DisconnectUser(ctx context.Context, name string) (Reply, error) {
	if err := ValidUsername(name); err != nil {
		return Reply{}, fmt.Errorf("occtl disconnect user: %w", err)
	}
	return o.text(ctx, true, "could not", "disconnect", "user", name)
}

// DisconnectID runs disconnect id ID; unknown IDs are ErrNotFound.
func (o *Occtl) DisconnectID(ctx context.Context, id int) (Reply, error) {
	if err := ValidID(id); err != nil {
		return Reply{}, fmt.Errorf("occtl disconnect id: %w", err)
	}
	return o.text(ctx, true, "could not", "disconnect", "id", strconv.Itoa(id))
}

// UnbanIP runs unban ip IP. An address ocserv has no entry for is
// ErrNotFound (1.1.6: exit 1, "could not unban IP"); one with only points,
// or already unbanned, succeeds (checked against 1.1.6 in e2e).
func (o *Occtl) UnbanIP(ctx context.Context, ip netip.Addr) (Reply, error) {
	if !ip.IsValid() {
		return Reply{}, fmt.Errorf("occtl unban ip: %w: no address", ErrInvalidArgument)
	}
	return o.text(ctx, true, "could not", "unban", "ip", ip.Unmap().String())
}

// Reload runs reload. occtl exits 0 once the reload is scheduled, whatever
// happens next (bad per-user files only show at the next login).
func (o *Occtl) Reload(ctx context.Context) (Reply, error) {
	return o.text(ctx, false, "Error scheduling", "reload")
}

// TerminateUser runs terminate user NAME (occtl ≥ 1.4.2; older ones are
// ErrUnsupported): disconnects and invalidates the session cookies.
func (o *Occtl) TerminateUser(ctx context.Context, name string) (Reply, error) {
	if err := ValidUsername(name); err != nil {
		return Reply{}, fmt.Errorf("occtl terminate user: %w", err)
	}
	return o.text(ctx, true, "could not", "terminate", "user", name)
}

// TerminateID runs terminate id ID (≥ 1.4.2).
func (o *Occtl) TerminateID(ctx context.Context, id int) (Reply, error) {
	if err := ValidID(id); err != nil {
		return Reply{}, fmt.Errorf("occtl terminate id: %w", err)
	}
	return o.text(ctx, true, "could not", "terminate", "id", strconv.Itoa(id))
}

// TerminateSession runs terminate session SID (≥ 1.4.2).
func (o *Occtl) TerminateSession(ctx context.Context, sid string) (Reply, error) {
	if err := ValidSessionID(sid); err != nil {
		return Reply{}, fmt.Errorf("occtl terminate session: %w", err)
	}
	return o.text(ctx, true, "could not", "terminate", "session", sid)
}

// ValidUsername accepts names occtl can receive as one argument: occtl
// joins its arguments into a line and splits that again, so whitespace
// would change the meaning; a leading '-' could be read as an option, and
// "help"/"?" ask for help instead.
func ValidUsername(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty user name", ErrInvalidArgument)
	case len(name) > 256:
		return fmt.Errorf("%w: user name longer than 256 bytes", ErrInvalidArgument)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: user name is not UTF-8", ErrInvalidArgument)
	case name[0] == '-':
		return fmt.Errorf("%w: user name %q starts with '-'", ErrInvalidArgument, name)
	case name == "help" || name == "?" || name == noneValue:
		return fmt.Errorf("%w: user name %q is reserved by occtl", ErrInvalidArgument, name)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '\'' || r == '"' || r == '\\' {
			return fmt.Errorf("%w: user name %q contains %q", ErrInvalidArgument, clip(name), r)
		}
	}
	return nil
}

// ValidID accepts worker IDs (PIDs): positive 32-bit integers. occtl
// treats 0 (and anything atoi reads as 0) as a request for help.
func ValidID(id int) error {
	if id <= 0 || id > 1<<31-1 {
		return fmt.Errorf("%w: ID %d is not a positive 32-bit integer", ErrInvalidArgument, id)
	}
	return nil
}

// ValidSessionID accepts a short or full session id: base64 text (occtl
// prints 6 characters, or the full 28).
func ValidSessionID(sid string) error {
	if sid == "" || len(sid) > 128 {
		return fmt.Errorf("%w: session id of %d bytes", ErrInvalidArgument, len(sid))
	}
	for i := 0; i < len(sid); i++ {
		c := sid[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '-' || c == '_'
		if !ok || (i == 0 && c == '-') {
			return fmt.Errorf("%w: session id %q contains %q", ErrInvalidArgument, clip(sid), c)
		}
	}
	return nil
}
