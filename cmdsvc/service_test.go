package cmdsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/time/rate"

	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// ok(t)(client.Do(…)) fails the test unless the command succeeded.
func ok(t *testing.T) func(*Reply, error) *Reply {
	return func(rep *Reply, err error) *Reply {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.Error != nil {
			t.Fatalf("%s refused: %+v", rep.Action, rep.Error)
		}
		return rep
	}
}

func wantCode(t *testing.T, rep *Reply, err error, code string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Error == nil || rep.Error.Code != code {
		t.Fatalf("reply %+v (error %+v), want code %s", rep, rep.Error, code)
	}
	if rep.Error.Message == "" {
		t.Errorf("code %s without a message", code)
	}
}

// A NATS user without publish rights on command subjects cannot send one:
// the server rejects the publish (the client sees the permission
// violation), and the service never sees it.
func TestNATSPermissionDenied(t *testing.T) {
	b := newBed(t)
	b.start()
	errs := make(chan error, 4)
	viewer := b.connect("viewer", "viewer-pw", errs)
	c := &Client{NC: viewer, Prefix: testPrefix, Key: b.rw}
	body, err := c.Sign(testServer, "kick", map[string]string{"user": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err = viewer.RequestWithContext(rctx, testPrefix+".cmd."+testServer+".kick", body)
	if err == nil {
		t.Fatal("the viewer's command got a reply")
	}
	select {
	case e := <-errs:
		if !errors.Is(e, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(e.Error()), "permissions violation") {
			t.Fatalf("error %v, want a permissions violation", e)
		}
		if !strings.Contains(e.Error(), testPrefix+".cmd."+testServer+".kick") {
			t.Errorf("violation does not name the subject: %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no permissions violation reported to the viewer")
	}
	if a := b.audits(); len(a) != 0 {
		t.Errorf("the service saw the viewer's command: %+v", a)
	}
	if _, err := kick.Check(b.sp.Dir(), "alice", time.Now()); err != nil {
		t.Fatal(err)
	}
	if e, _ := kick.Check(b.sp.Dir(), "alice", time.Now()); e != nil {
		t.Fatal("alice was kicked by a user without rights")
	}
	// The same command from the operator's connection goes through.
	op := b.client(b.rw)
	ok(t)(op.Send(ctx(t), testServer, "kick", body))
}

func TestReadAndWriteActions(t *testing.T) {
	b := newBed(t)
	b.start()
	ro, rw := b.client(b.ro), b.client(b.rw)

	rep := ok(t)(ro.Do(ctx(t), testServer, "users", nil))
	var users []ocserv.User
	if err := json.Unmarshal(rep.Result, &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Username != "alice" || users[1].Username != "bob" || !users[0].RemoteIP.IsValid() {
		t.Fatalf("users %+v", users)
	}
	rep = ok(t)(ro.Do(ctx(t), testServer, "bans", nil))
	var bans []ocserv.Ban
	json.Unmarshal(rep.Result, &bans)
	if len(bans) != 1 || bans[0].IP.String() != "127.0.0.1" || bans[0].Score != 60 {
		t.Fatalf("bans %+v", bans)
	}
	rep, err := ro.Do(ctx(t), testServer, "user", map[string]string{"user": "nosuch"})
	wantCode(t, rep, err, CodeNotFound)
	rep = ok(t)(ro.Do(ctx(t), testServer, "spool-status", nil))
	if !bytes.Contains(rep.Result, []byte(`"spool_id"`)) {
		t.Errorf("spool-status %s", rep.Result)
	}

	// Out of role: a read-only key cannot kick; refused and audited.
	rep, err = ro.Do(ctx(t), testServer, "kick", map[string]string{"user": "alice"})
	wantCode(t, rep, err, opauth.CodeForbidden)
	if e, _ := kick.Check(b.sp.Dir(), "alice", time.Now()); e != nil {
		t.Fatal("a read-only key kicked alice")
	}

	// kick: on the list, sessions disconnected.
	ok(t)(rw.Do(ctx(t), testServer, "kick", map[string]string{"user": "alice", "reason": "abuse ticket 42", "for": "1h"}))
	e, err := kick.Check(b.sp.Dir(), "alice", time.Now())
	if err != nil || e == nil || e.Reason != "abuse ticket 42" || e.Until == nil || !strings.HasPrefix(e.By, "alice@ops (U") {
		t.Fatalf("kick entry %+v, %v", e, err)
	}
	// A kick of someone not connected still holds (nothing to disconnect).
	rep = ok(t)(rw.Do(ctx(t), testServer, "kick", map[string]string{"user": "nobody"}))
	if !bytes.Contains(rep.Result, []byte(`"disconnected":false`)) {
		t.Errorf("kick nobody: %s", rep.Result)
	}
	rep = ok(t)(ro.Do(ctx(t), testServer, "kicked", nil))
	var list []kick.Entry
	json.Unmarshal(rep.Result, &list)
	if len(list) != 2 || list[0].User != "alice" || list[1].User != "nobody" {
		t.Errorf("kicked %s", rep.Result)
	}
	ok(t)(rw.Do(ctx(t), testServer, "unkick", map[string]string{"user": "alice"}))
	if e, _ := kick.Check(b.sp.Dir(), "alice", time.Now()); e != nil {
		t.Fatal("still kicked after unkick")
	}
	rep, err = rw.Do(ctx(t), testServer, "unkick", map[string]string{"user": "alice"})
	wantCode(t, rep, err, CodeNotFound)

	rep, err = rw.Do(ctx(t), testServer, "unban", map[string]string{"ip": "10.9.9.9"})
	wantCode(t, rep, err, CodeNotFound)
	ok(t)(rw.Do(ctx(t), testServer, "unban", map[string]string{"ip": "192.0.2.7"}))
	rep, err = rw.Do(ctx(t), testServer, "disconnect", map[string]string{"user": "alice", "id": "7"})
	wantCode(t, rep, err, CodeInvalidArgument)
	rep, err = rw.Do(ctx(t), testServer, "terminate", map[string]string{"user": "alice"})
	wantCode(t, rep, err, CodeUnsupported)
	if !strings.Contains(rep.Error.Message, "1.4.2") || !strings.Contains(rep.Error.Message, "kick") {
		t.Errorf("terminate on 1.1.6: %q", rep.Error.Message)
	}
	ok(t)(rw.Do(ctx(t), testServer, "reload", nil))
	ok(t)(rw.Do(ctx(t), testServer, "firewall-removeall", nil))

	want := []string{"show users", "show ip bans", "show user nosuch", "disconnect user alice", "disconnect user nobody",
		"unban ip 10.9.9.9", "unban ip 192.0.2.7", "reload", "firewall removeall"}
	if got := b.argv(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("commands run:\n%q\nwant\n%q", got, want)
	}

	// Audit: every command; a write has accepted then done with the
	// same key and nonce, and distinct deterministic ids.
	au := b.audits()
	byPhase := map[string]int{}
	ids := map[string]bool{}
	for _, a := range au {
		byPhase[a.Audit.Phase]++
		if ids[a.ID] {
			t.Errorf("event_id %s twice", a.ID)
		}
		ids[a.ID] = true
	}
	// 5 reads; the forbidden kick and the disconnect with both user and
	// id refused; 9 writes accepted, then done.
	if byPhase[PhaseRefused] != 2 || byPhase[PhaseDone] != 14 || byPhase[PhaseAccepted] != 9 {
		t.Errorf("audit phases %v", byPhase)
	}
	var kickAcc, kickDone *Audit
	for i := range au {
		a := &au[i].Audit
		if a.Action == "kick" && a.Args["user"] == "alice" && a.OK {
			switch a.Phase {
			case PhaseAccepted:
				kickAcc = a
			case PhaseDone:
				kickDone = a
			}
		}
		if a.Action == "kick" && a.Phase == PhaseRefused && (a.Code != opauth.CodeForbidden || a.Role != "read-only" || a.KeyName != "grafana") {
			t.Errorf("forbidden kick audit %+v", a)
		}
	}
	if kickAcc == nil || kickDone == nil || kickAcc.Nonce != kickDone.Nonce || kickDone.KeyName != "alice@ops" || kickDone.Role != "read-write" ||
		kickDone.Args["reason"] != "abuse ticket 42" || kickDone.Subject != "ocserv.cmd.vpn1.kick" {
		t.Errorf("kick audits %+v / %+v", kickAcc, kickDone)
	}
}

// tamper rewrites the signed bytes of a request body.
func tamper(t *testing.T, body []byte, from, to string) []byte {
	t.Helper()
	var env opauth.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(env.Cmd, []byte(from)) {
		t.Fatalf("%q not in %s", from, env.Cmd)
	}
	env.Cmd = bytes.Replace(env.Cmd, []byte(from), []byte(to), 1)
	out, _ := json.Marshal(env)
	return out
}

func stripSig(t *testing.T, body []byte) []byte {
	var env opauth.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	env.Sig = ""
	out, _ := json.Marshal(env)
	return out
}

func TestRefusedCommands(t *testing.T) {
	b := newBed(t)
	b.start()
	rw := b.client(b.rw)
	ro := b.client(b.ro)
	rwPub, _ := b.rw.PublicKey()
	sign := func(c *Client, server, action string, args map[string]string) []byte {
		body, err := c.Sign(server, action, args)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	kickAlice := map[string]string{"user": "alice"}
	// A stranger's key, claiming to be the trusted one.
	forged := func() []byte {
		s := b.client(b.stranger)
		strPub, _ := b.stranger.PublicKey()
		return tamper(t, sign(s, testServer, "kick", kickAlice), strPub, rwPub)
	}
	at := func(d time.Duration) *Client {
		c := b.client(b.rw)
		c.Now = func() time.Time { return time.Now().Add(d) }
		return c
	}
	long := b.client(b.rw)
	long.TTL = time.Hour

	cases := []struct {
		name   string
		action string
		body   []byte
		code   string
	}{
		{"unsigned", "kick", []byte(`{"action":"kick","args":{"user":"alice"}}`), opauth.CodeUnsigned},
		{"garbage", "kick", []byte("kick alice; rm -rf /"), opauth.CodeUnsigned},
		{"no signature", "kick", stripSig(t, sign(rw, testServer, "kick", kickAlice)), opauth.CodeUnsigned},
		{"unknown key", "kick", sign(b.client(b.stranger), testServer, "kick", kickAlice), opauth.CodeUnknownKey},
		{"forged key id", "kick", forged(), opauth.CodeBadSignature},
		{"tampered argument", "kick", tamper(t, sign(rw, testServer, "kick", kickAlice), `"alice"`, `"bob"`), opauth.CodeBadSignature},
		{"tampered server_id", "kick", tamper(t, sign(rw, "vpn2", "kick", kickAlice), "vpn2", "vpn1"), opauth.CodeBadSignature},
		{"signed for another server", "kick", sign(rw, "vpn2", "kick", kickAlice), opauth.CodeWrongSubject},
		{"signed for another action", "kick", sign(rw, testServer, "unkick", kickAlice), opauth.CodeWrongSubject},
		{"expired", "kick", sign(at(-10*time.Minute), testServer, "kick", kickAlice), opauth.CodeExpired},
		{"from the future", "kick", sign(at(time.Minute), testServer, "kick", kickAlice), opauth.CodeNotYetValid},
		{"validity too long", "kick", sign(long, testServer, "kick", kickAlice), opauth.CodeTooLong},
		{"out of role", "kick", sign(ro, testServer, "kick", kickAlice), opauth.CodeForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(b.audits())
			rep, err := rw.Send(ctx(t), testServer, tc.action, tc.body)
			wantCode(t, rep, err, tc.code)
			au := b.audits()
			if len(au) != before+1 {
				t.Fatalf("%d new audit events, want 1", len(au)-before)
			}
			a := au[len(au)-1].Audit
			if a.Phase != PhaseRefused || a.OK || a.Code != tc.code || a.Action != tc.action || a.Subject != "ocserv.cmd.vpn1."+tc.action {
				t.Errorf("audit %+v", a)
			}
		})
	}
	if got := b.argv(); len(got) != 0 {
		t.Errorf("refused commands ran occtl: %q", got)
	}
	if l, _ := kick.List(b.sp.Dir()); len(l) != 0 {
		t.Errorf("refused commands changed the kick list: %+v", l)
	}
}

// A command runs once: the same bytes again are refused, also after the
// service restarted (the nonce cache is on disk).
func TestReplayRefusedAcrossRestart(t *testing.T) {
	b := newBed(t)
	b.start()
	rw := b.client(b.rw)
	body, err := rw.Sign(testServer, "unban", map[string]string{"ip": "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	ok(t)(rw.Send(ctx(t), testServer, "unban", body))
	rep, err := rw.Send(ctx(t), testServer, "unban", body)
	wantCode(t, rep, err, opauth.CodeReplayed)
	b.start() // restart: a new service, the nonce cache read back from its file
	rep, err = rw.Send(ctx(t), testServer, "unban", body)
	wantCode(t, rep, err, opauth.CodeReplayed)
	if got := b.argv(); len(got) != 1 {
		t.Errorf("occtl ran %d times for one command: %q", len(got), got)
	}
	var refused int
	ids := map[string]bool{}
	for _, a := range b.audits() {
		if ids[a.ID] {
			t.Errorf("event_id %s minted twice", a.ID)
		}
		ids[a.ID] = true
		if a.Audit.Phase == PhaseRefused && a.Audit.Code == opauth.CodeReplayed {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("%d replay refusals audited, want 2", refused)
	}
	// A fresh command with the same content is a new command.
	ok(t)(rw.Do(ctx(t), testServer, "unban", map[string]string{"ip": "192.0.2.7"}))
}

// Hostile arguments never reach occtl, the kick list or a file name.
func TestHostileArgumentsRefused(t *testing.T) {
	b := newBed(t)
	b.start()
	rw := b.client(b.rw)
	huge := strings.Repeat("a", 5000)
	cases := []struct {
		action string
		args   map[string]string
	}{
		{"kick", map[string]string{"user": "alice;reboot"}},
		{"kick", map[string]string{"user": "$(reboot)"}},
		{"kick", map[string]string{"user": "`id`"}},
		{"kick", map[string]string{"user": "alice\nbob"}},
		{"kick", map[string]string{"user": "../../etc/passwd"}},
		{"kick", map[string]string{"user": "-rf"}},
		{"kick", map[string]string{"user": "al ice"}},
		{"kick", map[string]string{"user": huge}},
		{"kick", map[string]string{"user": "alice", "reason": "x\ny"}},
		{"kick", map[string]string{"user": "alice", "reason": huge}},
		{"kick", map[string]string{"user": "alice", "for": "forever"}},
		{"kick", map[string]string{"user": "alice", "shell": "sh"}},
		{"kick", map[string]string{}},
		{"unban", map[string]string{"ip": "1.2.3.4; ls"}},
		{"unban", map[string]string{"ip": "$(curl evil)"}},
		{"unban", map[string]string{"ip": "fe80::1%eth0"}},
		{"disconnect", map[string]string{"id": "1 2"}},
		{"disconnect", map[string]string{"id": "0"}},
		{"disconnect", map[string]string{"id": "-1"}},
		{"user", map[string]string{"user": "alice\x00root"}},
		{"session", map[string]string{"sid": "../x"}},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%d-%s", i, tc.action), func(t *testing.T) {
			rep, err := rw.Do(ctx(t), testServer, tc.action, tc.args)
			wantCode(t, rep, err, CodeInvalidArgument)
		})
	}
	if got := b.argv(); len(got) != 0 {
		t.Errorf("hostile arguments reached occtl: %q", got)
	}
	if l, _ := kick.List(b.sp.Dir()); len(l) != 0 {
		t.Errorf("hostile arguments changed the kick list: %+v", l)
	}
	refused := 0
	for _, a := range b.audits() {
		if a.Audit.Phase == PhaseRefused && a.Audit.Code == CodeInvalidArgument {
			refused++
			for k, v := range a.Audit.Args {
				if len(v) > 300 {
					t.Errorf("audit keeps a %d-byte argument %s", len(v), k)
				}
			}
		}
	}
	if refused != len(cases) {
		t.Errorf("%d refusals audited, want %d", refused, len(cases))
	}
	// A body over the size bound is refused before anything is parsed.
	big, _ := json.Marshal(map[string]string{"x": strings.Repeat("y", opauth.MaxBody)})
	rep, err := rw.Send(ctx(t), testServer, "kick", big)
	wantCode(t, rep, err, opauth.CodeMalformed)
}

// A flood of refusals writes at most the allowed number of audit events;
// the rest are counted into the next one written, and an accepted command
// is always audited.
func TestRefusalAuditsRateLimited(t *testing.T) {
	b := newBed(t)
	b.perMin = 3
	b.start()
	rw := b.client(b.rw)
	for i := 0; i < 10; i++ {
		rep, err := rw.Send(ctx(t), testServer, "reload", []byte(`{}`))
		wantCode(t, rep, err, opauth.CodeUnsigned)
	}
	if n := len(b.audits()); n != 3 {
		t.Fatalf("%d audit events for 10 refusals at 3 per minute", n)
	}
	ok(t)(rw.Do(ctx(t), testServer, "reload", nil))
	if n := len(b.audits()); n != 5 {
		t.Fatalf("accepted command: %d audit events, want 3 + accepted + done", n)
	}
	// The limiter refills (here at once): the next refusal carries the count.
	b.svc.au.mu.Lock()
	b.svc.au.lim = rate.NewLimiter(rate.Inf, 1)
	b.svc.au.mu.Unlock()
	rep, err := rw.Send(ctx(t), testServer, "reload", []byte(`{}`))
	wantCode(t, rep, err, opauth.CodeUnsigned)
	au := b.audits()
	if last := au[len(au)-1].Audit; last.Phase != PhaseRefused || last.SuppressedRefusals != 7 {
		t.Errorf("refusal after the flood: %+v, want suppressed_refusals 7", last)
	}
}

// Discovery through micro's $SRV subjects: the instance names its
// server_id and the curve key to seal secrets to; every action is an
// endpoint on <prefix>.cmd.<server_id>.<action>.
func TestDiscovery(t *testing.T) {
	b := newBed(t)
	b.start()
	c := b.client(b.ro)
	servers, err := c.Discover(ctx(t), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	xpub, _ := b.xkey.PublicKey()
	if len(servers) != 1 || servers[0].ServerID != testServer || servers[0].XKey != xpub {
		t.Fatalf("servers %+v", servers)
	}
	subjects := map[string]string{}
	for _, e := range servers[0].Endpoints {
		subjects[e.Name] = e.Subject
	}
	for _, a := range []string{"status", "users", "user", "id", "sessions", "session", "iroutes", "bans", "ban-points",
		"spool-status", "kicked", "disconnect", "terminate", "kick", "unkick", "unban", "reload", "firewall-removeall"} {
		if subjects[a] != "ocserv.cmd.vpn1."+a {
			t.Errorf("endpoint %s on %q", a, subjects[a])
		}
	}
	// $SRV.PING and $SRV.STATS answer too.
	for _, verb := range []micro.Verb{micro.PingVerb, micro.StatsVerb} {
		subj, _ := micro.ControlSubject(verb, ServiceName, "")
		m, err := c.NC.Request(subj, nil, 2*time.Second)
		if err != nil || !bytes.Contains(m.Data, []byte(testServer)) {
			t.Errorf("%s: %v %s", subj, err, m.Data)
		}
	}
}
