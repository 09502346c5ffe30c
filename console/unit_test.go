package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/livestate"
)

func TestPasswordHashes(t *testing.T) {
	h, err := HashPassword("correct horse battery", cheapArgon)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %s", h)
	}
	if !CheckHash(h, "correct horse battery") || CheckHash(h, "correct horse batterx") || CheckHash(h, "") {
		t.Fatal("CheckHash accepts the wrong password or refuses the right one")
	}
	h2, _ := HashPassword("correct horse battery", cheapArgon)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if _, err := HashPassword("short", cheapArgon); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=4194304,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "$2b$10$abcdefghijklmnopqrstuv"} {
		if CheckHash(bad, "x") {
			t.Errorf("CheckHash(%q) accepted", bad)
		}
	}
}

func TestAccountsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "users")
	h, _ := HashPassword("a-long-password", cheapArgon)
	for _, tc := range []struct{ content, want string }{
		{"alice operator\n", "line 1: want"},
		{"alice admin " + h + "\n", `role "admin" is not viewer or operator`},
		{"-alice viewer " + h + "\n", "must not start with"},
		{"alice viewer not-a-hash\n", "not an argon2id hash"},
		{"alice viewer " + h + "\nalice operator " + h + "\n", "line 2: user alice listed twice"},
	} {
		if _, err := ParseAccounts([]byte(tc.content)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.content, err, tc.want)
		}
	}
	if err := EditAccounts(p, func(m map[string]Account) error {
		m["alice"] = Account{Name: "alice", Role: Viewer, Hash: h}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("accounts file mode %v", fi.Mode())
	}
	a, err := LoadAccounts(p)
	if err != nil {
		t.Fatal(err)
	}
	if acct, ok, _ := a.Lookup("alice"); !ok || acct.Role != Viewer {
		t.Fatalf("alice: %+v %v", acct, ok)
	}
	// A change is seen at the next lookup; a role change counts at once.
	EditAccounts(p, func(m map[string]Account) error {
		m["alice"] = Account{Name: "alice", Role: Operator, Hash: h}
		m["bob"] = Account{Name: "bob", Role: Viewer, Hash: h}
		return nil
	})
	os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if acct, _, _ := a.Lookup("alice"); acct.Role != Operator {
		t.Fatalf("role change not seen: %+v", acct)
	}
	// Readable by others: nobody logs in (fail closed).
	os.Chmod(p, 0o644)
	os.Chtimes(p, time.Now().Add(2*time.Second), time.Now().Add(2*time.Second))
	if _, _, err := a.Lookup("alice"); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable file: %v", err)
	}
}

func TestSessionsPersistAndExpire(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 24, 7, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	p := filepath.Join(dir, "sessions.json")
	s, err := OpenSessions(p, time.Hour, 10*time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	cookie, sess, err := s.Create("olga", "127.0.0.1", "test")
	if err != nil {
		t.Fatal(err)
	}
	if sess.CSRF == "" || len(sess.CSRF) < 40 {
		t.Fatalf("CSRF token %q", sess.CSRF)
	}
	// Reopened from the file (a restart), the cookie still works.
	s2, _ := OpenSessions(p, time.Hour, 10*time.Minute, clock)
	if got, err := s2.Lookup(cookie); err != nil || got.User != "olga" || got.CSRF != sess.CSRF {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	// Idle past the timeout: gone.
	now = now.Add(11 * time.Minute)
	if _, err := s2.Lookup(cookie); err != ErrNoSession {
		t.Fatalf("idle session: %v", err)
	}
	// Absolute lifetime, even when used.
	c2, _, _ := s2.Create("olga", "127.0.0.1", "test")
	for i := 0; i < 7; i++ {
		now = now.Add(9 * time.Minute)
		if _, err := s2.Lookup(c2); err != nil && i < 6 {
			t.Fatalf("used session ended early at step %d: %v", i, err)
		}
	}
	if _, err := s2.Lookup(c2); err != ErrNoSession {
		t.Fatalf("session past its lifetime: %v", err)
	}
	// Garbage cookies.
	for _, c := range []string{"", "nodot", ".", "x.", strings.Repeat("a", 300) + ".b"} {
		if _, err := s2.Lookup(c); err != ErrNoSession {
			t.Errorf("cookie %q: %v", c, err)
		}
	}
	// Deleting a user's sessions.
	c3, _, _ := s2.Create("victor", "127.0.0.1", "x")
	if n := s2.DeleteUser("victor"); n != 1 {
		t.Fatalf("DeleteUser: %d", n)
	}
	if _, err := s2.Lookup(c3); err != ErrNoSession {
		t.Fatal("deleted user's session lives")
	}
}

func TestLoginLimiter(t *testing.T) {
	l := newLoginLimiter(10*time.Second, 3)
	t0 := time.Unix(1e9, 0)
	for i := 0; i < 3; i++ {
		if w := l.allow(t0, "ip:a", "user:x"); w != 0 {
			t.Fatalf("attempt %d waited %s", i, w)
		}
	}
	if w := l.allow(t0, "ip:a", "user:y"); w == 0 || w > 10*time.Second {
		t.Fatalf("4th from the same address: wait %s", w)
	}
	// A refused attempt is not charged to the other key: user y from
	// another address still has its whole burst.
	for i := 0; i < 3; i++ {
		if w := l.allow(t0, "ip:b", "user:y"); w != 0 {
			t.Fatalf("user y from b, attempt %d: wait %s", i, w)
		}
	}
	if w := l.allow(t0.Add(10*time.Second), "ip:a", "user:z"); w != 0 {
		t.Fatalf("after the interval: wait %s", w)
	}
}

func TestLocalPathOnly(t *testing.T) {
	for in, want := range map[string]string{
		"/users/alice?cursor=x": "/users/alice?cursor=x", "": "/", "//evil.example": "/", "https://evil.example/": "/",
		"/\\evil.example": "/", "javascript:alert(1)": "/", "/ok\r\nSet-Cookie: x": "/", "relative": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUndeclaredPartialFailsAtStart(t *testing.T) {
	tm := template.Must(template.New("x").Parse(`{{define "content"}}{{template "nowhere" .}}{{end}}`))
	if err := checkCalls(tm); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("checkCalls: %v", err)
	}
	a, err := loadAssets()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseViews(a); err != nil {
		t.Fatalf("the shipped views: %v", err)
	}
	if _, err := a.url("vendor/nothing.js"); err == nil {
		t.Fatal("an unknown asset has a URL")
	}
	// Every vendored file is listed with its integrity in VERSIONS.
	versions, _ := staticFS.ReadFile("static/vendor/VERSIONS")
	for name := range a.byName {
		if strings.HasPrefix(name, "vendor/") && !strings.HasPrefix(name, "vendor/LICENSE") && name != "vendor/VERSIONS" &&
			!strings.Contains(string(versions), " "+strings.TrimPrefix(name, "vendor/")) {
			t.Errorf("%s is not in vendor/VERSIONS (run scripts/vendor-js.sh)", name)
		}
	}
}

func TestTemplatesEscapeHostileValues(t *testing.T) {
	b := newBench(t, benchOpts{noCommands: true})
	hostile := `<script>alert(1)</script>"'`
	// A VPN user name an attacker chose arrives through an event.
	uid := "01930000-0000-7000-8000-000000000001"
	b.connectOnline(hostile, uid, "01930000-0000-7000-8000-000000000002")
	c := b.client()
	c.mustLogin(viewerUser, viewerPass)
	_, page := c.get("/online")
	if strings.Contains(page, "<script>alert(1)") {
		t.Fatal("a user name was not escaped")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatalf("the escaped name is missing:\n%s", page)
	}
}

func TestLiveMergesSnapshotsAndEvents(t *testing.T) {
	l := NewLive(slog.New(slog.DiscardHandler), nil)
	t0 := time.Now().UTC()
	setUsers := func(items []OnlineSession, at time.Time) {
		l.mu.Lock()
		l.server("vpn1").setUsers(items, at)
		l.changedLocked()
		l.mu.Unlock()
	}
	in := uint64(10)
	setUsers([]OnlineSession{fromUserItem("vpn1", livestate.UserItem{ID: 1, Username: "alice", Device: "vpns0", SessionUID: "u1", BytesIn: &in, BytesOut: &in})}, t0)
	ev := func(typ events.Type, uid, user string, at time.Time) []byte {
		ok := true
		e := events.Event{V: 1, EventID: uid + string(typ), ServerID: "vpn1", SpoolID: "sp1", Type: typ, Time: at.Format(time.RFC3339Nano),
			SessionUID: uid, Session: &events.Session{ID: 2, Username: user, Device: "vpns1"}}
		if typ == events.Connect {
			e.Admitted = &ok
		}
		b, _ := json.Marshal(e)
		return b
	}
	names := func() []string {
		var out []string
		for _, o := range l.Servers()[0].Sessions {
			out = append(out, o.Username)
		}
		return out
	}
	l.onEvent(ev(events.Connect, "u2", "bob", t0.Add(time.Second)))
	if got := names(); strings.Join(got, ",") != "alice,bob" {
		t.Fatalf("after bob's connect: %v", got)
	}
	l.onEvent(ev(events.Disconnect, "u1", "alice", t0.Add(2*time.Second)))
	if got := names(); strings.Join(got, ",") != "bob" {
		t.Fatalf("after alice's disconnect: %v", got)
	}
	// A later snapshot is the truth: it lists bob (linked), not alice.
	setUsers([]OnlineSession{{ServerID: "vpn1", Username: "bob", SessionUID: "u2", Source: "snapshot"}}, t0.Add(5*time.Second))
	if got := names(); strings.Join(got, ",") != "bob" || l.Servers()[0].Sessions[0].Source != "snapshot" {
		t.Fatalf("after the snapshot: %v", l.Servers()[0].Sessions)
	}
	// A refused login is not online.
	b, _ := json.Marshal(events.Event{V: 1, EventID: "x", ServerID: "vpn1", SpoolID: "sp1", Type: events.Connect,
		Time: t0.Add(6 * time.Second).Format(time.RFC3339Nano), SessionUID: "u3", Session: &events.Session{Username: "mallory"}, Admitted: new(bool)})
	l.onEvent(b)
	if got := names(); strings.Join(got, ",") != "bob" {
		t.Fatalf("a refused login shows: %v", got)
	}
	// Two spools publishing under one server_id: a clone warning.
	if len(l.Servers()[0].Clones) != 0 {
		t.Fatal("clone warning with one spool")
	}
	e2 := events.Event{V: 1, EventID: "y", ServerID: "vpn1", SpoolID: "sp2", Type: events.HostUpdate, Time: t0.Format(time.RFC3339Nano)}
	b, _ = json.Marshal(e2)
	l.onEvent(b)
	if c := l.Servers()[0].Clones; len(c) != 2 {
		t.Fatalf("clones %v, want sp1 and sp2", c)
	}
}

// TestUserLinksCarryAnyName: ocserv takes user names the command service
// cannot (RADIUS and certificate names: "john smith", "a/b", "x?y"); the
// console shows them all, and every link to a user's page must lead to
// that user's page, not to another path, a query or a fragment.
func TestUserLinksCarryAnyName(t *testing.T) {
	b := newBench(t, benchOpts{noCommands: true})
	names := []string{"a/b", "x?y=1", "c#d", "john smith", "jörg", "100%", "%2e%2e", "..", ".", "alice"}
	g := b.gen("vpn1")
	for i, name := range names {
		ev := events.Event{V: 1, EventID: fmt.Sprintf("01930000-0000-7000-8000-0000000001%02d", i), ServerID: "vpn1", SpoolID: g.SpoolID, Seq: uint64(i + 1),
			Type: events.Connect, Time: time.Now().UTC().Format(time.RFC3339Nano), SessionUID: fmt.Sprintf("01930000-0000-7000-8000-0000000000%02d", i),
			Session: &events.Session{ID: i + 1, Username: name, Device: "vpns0", IPRemote: "192.168.250.9"}, Admitted: new(bool)}
		*ev.Admitted = true
		data, _ := json.Marshal(ev)
		b.nc.Publish("ocserv.events.vpn1.connect", data)
	}
	b.waitLive("every name online", func(l []ServerLive) bool {
		for _, n := range names {
			if !online(l, "vpn1", n) {
				return false
			}
		}
		return true
	})
	c := b.client()
	c.mustLogin(viewerUser, viewerPass)
	_, page := c.get("/online")
	links := regexp.MustCompile(`<a href="(/users?[/?][^"]*)">([^<]*)</a>`).FindAllStringSubmatch(page, -1)
	seen := map[string]bool{}
	for _, l := range links {
		href, shown := html.UnescapeString(l[1]), html.UnescapeString(l[2])
		seen[shown] = true
		resp, body := c.get(href)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: its link %s answered %d", shown, href, resp.StatusCode)
			continue
		}
		m := regexp.MustCompile(`<span id="user-name">([^<]*)</span>`).FindStringSubmatch(body)
		if m == nil || html.UnescapeString(m[1]) != shown {
			t.Errorf("%q: its link %s led to the page of %v", shown, href, m)
		}
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("%q has no link on the online page", n)
		}
	}
	// An operator gets the buttons only for names the hosts' commands
	// take; for the others, how to do it on the host instead of a button
	// that can only fail.
	op := b.client()
	op.mustLogin(opUser, opPass)
	_, page = op.get("/online")
	for _, n := range []string{"john smith", "alice"} {
		row := regexp.MustCompile(`(?s)<tr data-user="` + regexp.QuoteMeta(html.EscapeString(n)) + `".*?</tr>`).FindString(page)
		kick, note := strings.Contains(row, `data-action="kick"`), strings.Contains(row, "occtl disconnect id")
		if want := n == "alice"; kick != want || note == want {
			t.Errorf("%q's row: kick button %v, occtl note %v:\n%s", n, kick, note, row)
		}
		_, up := op.get(userPath(n))
		form, warn := strings.Contains(up, `action="/confirm/kick"`), strings.Contains(up, `id="user-not-actionable"`)
		if want := n == "alice"; form != want || warn == want {
			t.Errorf("%q's page: kick form %v, warning %v", n, form, warn)
		}
	}
}

// sseEvents reads server-sent events from r as a browser's EventSource
// does (the HTML standard's parser: CRLF, CR and LF each end a line; the
// last "event" field wins; "data" lines join with "\n"), until n events
// were dispatched.
func sseEvents(r io.Reader, n int) (types, data []string, err error) {
	br := bufio.NewReader(r)
	var typ string
	var buf []string
	var line []byte
	for len(types) < n {
		c, err := br.ReadByte()
		if err != nil {
			return types, data, err
		}
		if c != '\r' && c != '\n' {
			line = append(line, c)
			continue
		}
		if c == '\r' {
			if next, err := br.Peek(1); err == nil && next[0] == '\n' {
				br.ReadByte()
			}
		}
		l := string(line)
		line = line[:0]
		switch {
		case l == "":
			if buf != nil {
				if typ == "" {
					typ = "message"
				}
				types, data = append(types, typ), append(data, strings.Join(buf, "\n"))
			}
			typ, buf = "", nil
		case strings.HasPrefix(l, ":"):
		default:
			name, value, _ := strings.Cut(l, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "event":
				typ = value
			case "data":
				buf = append(buf, value)
			}
		}
	}
	return types, data, nil
}

// A carriage return in a value the live views show (a VPN user's name;
// RADIUS and certificate names are whatever they are) ends a line for
// the browser's EventSource, though the server split its frames on "\n"
// only: the rest of the value became a field of its own, and a name like
// "eve\revent: logout" sent every operator watching the online page to
// the login form at each update (or, with another event name, froze the
// view). The stream now ends its lines on CR too, so a value stays data.
func TestLiveStreamFramingHoldsAgainstCarriageReturns(t *testing.T) {
	b := newBench(t, benchOpts{noCommands: true})
	hostile := "eve\revent: logout\rdata: <b>forged</b>\r\nretry: 1"
	b.connectOnline(hostile, "01930000-0000-7000-8000-000000000011", "01930000-0000-7000-8000-000000000012")
	c := b.client()
	c.mustLogin(viewerUser, viewerPass)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.url+"/live?view=online", nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/live: %d", resp.StatusCode)
	}
	types, datas, err := sseEvents(resp.Body, 1)
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	if types[0] != "online" {
		t.Fatalf("the first live event is %q, want online; its data:\n%s", types[0], datas[0])
	}
	if !strings.Contains(datas[0], "eve") || !strings.Contains(datas[0], "event: logout") || strings.Contains(datas[0], "<b>forged") {
		t.Fatalf("the name is not in the update as escaped text:\n%s", datas[0])
	}
}

// connectOnline publishes a connect of user (a name an attacker chose,
// arriving through an event) on vpn1 as session uid, and waits until the
// console shows the user online.
func (b *bench) connectOnline(user, uid, eventID string) {
	b.t.Helper()
	g := b.gen("vpn1")
	ev := events.Event{V: 1, EventID: eventID, ServerID: "vpn1", SpoolID: g.SpoolID, Seq: 1,
		Type: events.Connect, Time: time.Now().UTC().Format(time.RFC3339Nano), SessionUID: uid,
		Session: &events.Session{ID: 1, Username: user, Device: "vpns0", IPRemote: "192.168.250.9"}, Admitted: new(bool)}
	*ev.Admitted = true
	data, _ := json.Marshal(ev)
	b.nc.Publish("ocserv.events.vpn1.connect", data)
	b.waitLive("the hostile user online", func(l []ServerLive) bool { return online(l, "vpn1", user) })
}
