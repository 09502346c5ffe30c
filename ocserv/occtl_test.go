package ocserv

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeOcctl writes a stand-in for occtl that answers from the 1.1.6
// captures and misbehaves on request, to test the runner's handling of
// exits, stderr, timeouts and output size (the real occtl is driven by
// e2e/occtl_test.go). It records its argv, one per line, in argv.log.
func fakeOcctl(t *testing.T) (path, argvLog string) {
	t.Helper()
	dir := t.TempDir()
	abs, err := filepath.Abs(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	argvLog = filepath.Join(dir, "argv.log")
	script := `#!/bin/sh
printf '%s\n' "$*" >> ` + argvLog + `
F=` + abs + `
[ "$1" = "-s" ] && shift 2
[ "$1" = "-j" ] && shift
case "$*" in
"show users") cat $F/show-users.json ;;
"show iroutes") cat $F/show-iroutes.json ;;
"show sessions all") cat $F/show-sessions-all.json ;;
"show status") cat $F/show-status.json ;;
"show ip bans") cat $F/show-ip-bans-2.json ;;
"show ip ban points") cat $F/show-ip-ban-points-2.json ;;
"show user alice") cat $F/show-user-alice.json ;;
"show user nosuch") cat $F/show-user-nosuch.json; exit 2 ;;
"show id 9113") cat $F/show-id.json ;;
"show id 4") cat $F/show-id.json ;;
"show id 5") cat $F/show-id-nosuch.json; exit 2 ;;
"show session lUuhGo") cat $F/show-session.json ;;
"show session nosuch") printf '[\n]\n'; exit 2 ;;
"show user broken") printf '[ {"ID": 1, "Username" "x"} ]'; exit 0 ;;
"show user slow") exec sleep 30 ;;
"show user big") head -c 3000000 /dev/zero | tr '\0' ' '; printf '[]' ;;
"show user crash") kill -SEGV $$ ;;
"show user exit2") printf '[ {"ID": 3} ]'; exit 2 ;;
"unban ip 127.0.0.1") cat $F/unban-ip.txt ;;
"unban ip 10.9.9.9") echo "could not unban IP '10.9.9.9'"; exit 1 ;;
"disconnect user ghost") echo "could not disconnect user 'ghost'" ;;
"disconnect id 7") echo "connection ID '7' was disconnected" ;;
"reload") echo "Server scheduled to reload" ;;
"--version") echo "OpenConnect server control (occtl) version 1.4.2" >&2 ;;
terminate*) cat $F/show-stats.txt >&2; exit 1 ;;
*) echo "error connecting to ocserv socket '/nowhere': No such file or directory" >&2; exit 1 ;;
esac
`
	path = filepath.Join(dir, "occtl")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, argvLog
}

func TestRunnerParsesEveryCommand(t *testing.T) {
	path, argvLog := fakeOcctl(t)
	var notes []string
	o := &Occtl{Path: path, Socket: "/run/test.sock", Location: utc,
		OnNote: func(cmd string, n Note) { notes = append(notes, cmd+": "+n.Msg) }}
	ctx := context.Background()

	users, err := o.ShowUsers(ctx)
	if err != nil || len(users) != 2 || users[1].Username != "bob" {
		t.Fatalf("ShowUsers: %v %v", users, err)
	}
	us, found, err := o.ShowUser(ctx, "alice")
	if err != nil || !found || len(us) != 1 || us[0].ID != 9114 {
		t.Errorf("ShowUser alice: %v %v %v", us, found, err)
	}
	us, found, err = o.ShowUser(ctx, "nosuch")
	if err != nil || found || len(us) != 0 {
		t.Errorf("ShowUser nosuch: %v found=%v %v; want not found without error", us, found, err)
	}
	u, found, err := o.ShowID(ctx, 9113)
	if err != nil || !found || u.Username != "bob" {
		t.Errorf("ShowID 9113: %+v %v %v", u, found, err)
	}
	if _, found, err = o.ShowID(ctx, 5); err != nil || found {
		t.Errorf("ShowID 5: found=%v %v; want not found", found, err)
	}
	// occtl answering with another ID than asked is not taken as the answer.
	if _, _, err = o.ShowID(ctx, 4); err == nil || !strings.Contains(err.Error(), "expected exactly ID 4") {
		t.Errorf("ShowID 4 answered by 9113: %v", err)
	}
	st, err := o.ShowStatus(ctx)
	if err != nil || st.ServerPID != 9072 {
		t.Errorf("ShowStatus: %+v %v", st, err)
	}
	ss, err := o.ShowSessions(ctx, false)
	if err != nil || len(ss) != 2 {
		t.Errorf("ShowSessions: %v %v", ss, err)
	}
	s, found, err := o.ShowSession(ctx, "lUuhGo")
	if err != nil || !found || s.Username != "alice" {
		t.Errorf("ShowSession: %+v %v %v", s, found, err)
	}
	if _, found, err = o.ShowSession(ctx, "nosuch"); err != nil || found {
		t.Errorf("ShowSession nosuch: %v %v", found, err)
	}
	ir, err := o.ShowIRoutes(ctx)
	if err != nil || len(ir) != 2 {
		t.Errorf("ShowIRoutes: %v %v", ir, err)
	}
	bans, err := o.ShowIPBans(ctx)
	if err != nil || len(bans) != 1 || bans[0].Score != 60 {
		t.Errorf("ShowIPBans: %v %v", bans, err)
	}
	points, err := o.ShowIPBanPoints(ctx)
	if err != nil || len(points) != 1 {
		t.Errorf("ShowIPBanPoints: %v %v", points, err)
	}
	v, err := o.Version(ctx)
	if err != nil || v != (Version{1, 4, 2}) {
		t.Errorf("Version: %v %v", v, err)
	}

	// The repairs reached OnNote, named by command.
	all := strings.Join(notes, "\n")
	for _, want := range []string{"occtl show iroutes: missing comma", "occtl show sessions all: trailing comma", "occtl show session lUuhGo: trailing comma"} {
		if !strings.Contains(all, want) {
			t.Errorf("OnNote missed %q:\n%s", want, all)
		}
	}

	// argv: socket first, -j only for JSON commands, each word its own
	// argument.
	log, err := os.ReadFile(argvLog)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if lines[0] != "-s /run/test.sock -j show users" {
		t.Errorf("first argv %q", lines[0])
	}
	if last := lines[len(lines)-1]; last != "-s /run/test.sock --version" {
		t.Errorf("version argv %q", last)
	}
}

func TestRunnerErrors(t *testing.T) {
	path, _ := fakeOcctl(t)
	o := &Occtl{Path: path, Timeout: 500 * time.Millisecond, MaxOutput: 1 << 20}
	ctx := context.Background()

	// Unparseable output names the command and the byte.
	_, _, err := o.ShowUser(ctx, "broken")
	var pe *ParseError
	if !errors.As(err, &pe) || err.Error() != `occtl show user broken: byte 23: ':' expected after key "Username"` {
		t.Errorf("broken output: %v", err)
	}

	start := time.Now()
	_, _, err = o.ShowUser(ctx, "slow")
	if err == nil || !strings.Contains(err.Error(), "occtl show user slow: no answer within 500ms") || time.Since(start) > 5*time.Second {
		t.Errorf("timeout: %v after %s", err, time.Since(start))
	}

	_, _, err = o.ShowUser(ctx, "big")
	if err == nil || !strings.Contains(err.Error(), "occtl show user big: output larger than 1048576 bytes") {
		t.Errorf("output cap: %v", err)
	}

	_, _, err = o.ShowUser(ctx, "crash")
	if err == nil || !strings.Contains(err.Error(), "occtl show user crash: signal: segmentation fault") {
		t.Errorf("crash: %v", err)
	}

	// Exit 2 with a non-empty answer is a failure, not "not found".
	_, found, err := o.ShowUser(ctx, "exit2")
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Reply.ExitCode != 2 || found {
		t.Errorf("exit 2 with entries: %v", err)
	}

	// stderr and the exit status are folded into the error.
	_, err = (&Occtl{Path: path, Socket: "/nowhere"}).DisconnectUser(ctx, "somebody")
	if err == nil || err.Error() != "occtl disconnect user somebody: exit 1: error connecting to ocserv socket '/nowhere': No such file or directory" || errors.Is(err, ErrNotFound) {
		t.Errorf("unreachable: %v", err)
	}

	// A cancelled context stops the command.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = o.ShowUsers(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}

	if _, err = (&Occtl{Path: filepath.Join(t.TempDir(), "missing")}).ShowUsers(ctx); err == nil || !strings.Contains(err.Error(), "occtl show users: ") {
		t.Errorf("missing binary: %v", err)
	}
}

func TestRunnerTextCommands(t *testing.T) {
	path, _ := fakeOcctl(t)
	o := &Occtl{Path: path}
	ctx := context.Background()

	rep, err := o.UnbanIP(ctx, netip.MustParseAddr("::ffff:127.0.0.1"))
	if err != nil || strings.TrimSpace(string(rep.Stdout)) != "IP '127.0.0.1' was unbanned" || rep.ExitCode != 0 {
		t.Errorf("unban: %+v %v", rep, err)
	}
	rep, err = o.UnbanIP(ctx, netip.MustParseAddr("10.9.9.9"))
	if !errors.Is(err, ErrNotFound) || rep.ExitCode != 1 || err.Error() != "occtl unban ip 10.9.9.9: exit 1: could not unban IP '10.9.9.9'" {
		t.Errorf("unban unknown: %+v %v", rep, err)
	}
	// 1.1.6 exits 0 but says it could not: still not found.
	if _, err = o.DisconnectUser(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("disconnect ghost: %v", err)
	}
	if rep, err = o.DisconnectID(ctx, 7); err != nil || rep.ExitCode != 0 {
		t.Errorf("disconnect id: %v", err)
	}
	if _, err = o.Reload(ctx); err != nil {
		t.Errorf("reload: %v", err)
	}
	_, err = o.TerminateUser(ctx, "alice")
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "occtl terminate user alice: exit 1: unknown command") {
		t.Errorf("terminate on an old occtl: %v", err)
	}
}

func TestDetectVersion(t *testing.T) {
	path, _ := fakeOcctl(t)
	ctx := context.Background()
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ocserv := script("ocserv", `echo "ocserv 1.3.0" >&2`)
	if v, err := (&Occtl{Path: path}).DetectVersion(ctx, ocserv); err != nil || v != (Version{1, 4, 2}) {
		t.Errorf("occtl's version first: %v %v", v, err)
	}
	mute := script("occtl-mute", "echo no banner here")
	if v, err := (&Occtl{Path: mute}).DetectVersion(ctx, ocserv); err != nil || v != (Version{1, 3, 0}) {
		t.Errorf("fallback to ocserv: %v %v", v, err)
	}
	broken := script("ocserv-broken", "echo crashed >&2; exit 3")
	_, err := (&Occtl{Path: mute}).DetectVersion(ctx, broken)
	if err == nil || !strings.Contains(err.Error(), "occtl --version: no version number") || !strings.Contains(err.Error(), "ocserv --version: exit 3: crashed") {
		t.Errorf("both failing: %v", err)
	}
}

func TestArgumentValidation(t *testing.T) {
	path, argvLog := fakeOcctl(t)
	o := &Occtl{Path: path}
	ctx := context.Background()
	for _, name := range []string{"", "-h", "a b", "tab\tx", "help", "?", "(none)", "quo'te", "new\nline", strings.Repeat("x", 257), "\xff"} {
		if _, _, err := o.ShowUser(ctx, name); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ShowUser(%q): %v, want ErrInvalidArgument", name, err)
		}
		if _, err := o.DisconnectUser(ctx, name); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("DisconnectUser(%q): %v", name, err)
		}
	}
	for _, id := range []int{0, -1, 1 << 31} {
		if _, _, err := o.ShowID(ctx, id); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ShowID(%d): %v", id, err)
		}
	}
	for _, sid := range []string{"", "-x", "a b", "a;b", strings.Repeat("A", 129)} {
		if _, _, err := o.ShowSession(ctx, sid); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ShowSession(%q): %v", sid, err)
		}
	}
	if _, err := o.UnbanIP(ctx, netip.Addr{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("UnbanIP(zero): %v", err)
	}
	// Nothing invalid reached occtl.
	if b, err := os.ReadFile(argvLog); err == nil {
		t.Errorf("occtl was run with invalid arguments:\n%s", b)
	}
	for _, ok := range []string{"alice", "bob.smith@example.com", "Ωmega", "user_1-2"} {
		if err := ValidUsername(ok); err != nil {
			t.Errorf("ValidUsername(%q): %v", ok, err)
		}
	}
	if err := ValidSessionID("lUuhGo9w2dgR953LR8Ria32FJuk="); err != nil {
		t.Error(err)
	}
}

// TestRealOcctlWithoutServer runs the installed occtl (no root needed)
// against a socket that does not exist: the real binary's failure must come
// back as an error naming the command, its exit status and its stderr, and
// its version banner (on stderr in 1.1.6) must parse.
func TestRealOcctlWithoutServer(t *testing.T) {
	if _, err := exec.LookPath("occtl"); err != nil {
		t.Skip("occtl not installed")
	}
	sock := filepath.Join(t.TempDir(), "none.sock")
	o := &Occtl{Socket: sock}
	ctx := context.Background()
	_, err := o.ShowUsers(ctx)
	want := "occtl show users: exit 1: error connecting to ocserv socket '" + sock + "': No such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if _, err := o.DisconnectUser(ctx, "alice"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("disconnect without a server: %v; must fail and not claim the user is unknown", err)
	}
	_, err = o.TerminateUser(ctx, "alice")
	v, verr := o.Version(ctx)
	if verr != nil || v.IsZero() {
		t.Fatalf("occtl --version: %v %v", v, verr)
	}
	// Terminate exists exactly from 1.4.2: the capability check and the
	// real binary must agree.
	if v.HasTerminate() == errors.Is(err, ErrUnsupported) {
		t.Errorf("occtl %v: HasTerminate %v but terminate gave %v", v, v.HasTerminate(), err)
	}
	if _, err := exec.LookPath("ocserv"); err == nil {
		ov, err := o.OcservVersion(ctx, "")
		if err != nil || ov != v {
			t.Errorf("ocserv --version: %v %v; occtl says %v", ov, err, v)
		}
	}
}
