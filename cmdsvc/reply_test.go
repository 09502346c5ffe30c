package cmdsvc

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Foreign reply subjects: a NATS user allowed to send commands (but with
// no operator key, and no rights on events or the JetStream API) names as
// reply another host's audit subject or a JetStream API subject, hoping
// the service publishes its answer there. Nothing arrives at any of those
// subjects and the events stream survives; the command requests are
// dropped unanswered and audited.
//
// Two agents: with the documented permissions (publish only into
// inboxes), and with the old wide ones (publish $SRV.> plus
// allow_responses), where only the service's own reply check stands in
// the way: that is the case that failed before the check existed (an
// answer landed on vpn2's audit subject, stored in the events stream, and
// others reached the JetStream API subjects).
func TestForeignReplySubjectGetsNothing(t *testing.T) {
	wide := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"$SRV.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{testPrefix + ".cmd." + testServer + ".>", "$SRV.>"}},
		Response:  &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
	}
	for _, tc := range []struct {
		name  string
		agent *server.Permissions
		// discovery: micro's own $SRV handlers answer any reply
		// subject; only the NATS permissions stop them.
		discovery bool
	}{
		{"documented permissions", nil, true},
		{"wide permissions", wide, false},
	} {
		t.Run(tc.name, func(t *testing.T) { foreignReply(t, tc.agent, tc.discovery) })
	}
}

func foreignReply(t *testing.T, agent *server.Permissions, discovery bool) {
	b := newBedWith(t, agent)
	b.start()

	// The watcher (all rights) holds the events stream and listens on
	// every subject an attacker would aim the answers at.
	admin := b.connect("admin", "admin-pw", nil)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "OCSERV_EVENTS", Subjects: []string{testPrefix + ".events.>"}}); err != nil {
		t.Fatal(err)
	}
	targets := []string{
		testPrefix + ".events.vpn2.audit",
		"$JS.API.STREAM.DELETE.OCSERV_EVENTS",
		"$JS.API.STREAM.PURGE.OCSERV_EVENTS",
		testPrefix + ".cmd.vpn2.kick", // another host's command subject
	}
	var mu sync.Mutex
	var got []string
	for _, subj := range targets {
		if _, err := admin.Subscribe(subj, func(m *nats.Msg) {
			mu.Lock()
			got = append(got, m.Subject+": "+string(m.Data))
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}

	op := b.client(b.rw) // an operator account; the attacker uses its NATS rights, not its key
	attacker := b.connect("operator", "operator-pw", nil)
	body, err := b.client(b.stranger).Sign(testServer, "kicked", nil)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := op.Sign(testServer, "kicked", nil)
	if err != nil {
		t.Fatal(err)
	}
	before := len(b.audits())
	sent := 0
	for _, reply := range targets {
		for _, msg := range [][]byte{body, signed, []byte("attacker-chosen text")} {
			if err := attacker.PublishMsg(&nats.Msg{Subject: Subject(testPrefix, testServer, "kicked"), Reply: reply, Data: msg}); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	// A request with no reply subject at all is dropped too.
	if err := attacker.Publish(Subject(testPrefix, testServer, "kicked"), signed); err != nil {
		t.Fatal(err)
	}
	sent++
	if discovery {
		for _, reply := range targets {
			for _, subj := range []string{"$SRV.INFO", "$SRV.PING." + ServiceName} {
				if err := attacker.PublishMsg(&nats.Msg{Subject: subj, Reply: reply}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := attacker.Flush(); err != nil {
		t.Fatal(err)
	}
	// Sequence point: the same endpoint (one subscription, handled in
	// order) answers a proper request, so every message above has been
	// handled; the same for discovery; then the watcher's round trip
	// delivers anything the server routed to it before.
	ok(t)(op.Do(ctx(t), testServer, "kicked", nil))
	if discovery {
		for _, subj := range []string{"$SRV.INFO", "$SRV.PING." + ServiceName} {
			if _, err := op.NC.Request(subj, nil, 5*time.Second); err != nil {
				t.Fatalf("%s from the operator: %v", subj, err)
			}
		}
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	if discovery {
		// micro's handlers did try: the server refused each publish.
		want := map[string]bool{}
		for _, reply := range targets {
			want[reply] = true
		}
		deadline := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case err := <-b.agentErrs:
				for subj := range want {
					if strings.Contains(err.Error(), `"`+subj+`"`) {
						delete(want, subj)
					}
				}
			case <-deadline:
				t.Fatalf("no permissions violation for the agent's publish to %v", want)
			}
		}
	}
	mu.Lock()
	if len(got) != 0 {
		t.Errorf("the service published to foreign subjects:\n%s", strings.Join(got, "\n"))
	}
	mu.Unlock()
	st, err := js.Stream(ctx(t), "OCSERV_EVENTS")
	if err != nil {
		t.Fatalf("the events stream is gone: %v", err)
	}
	if info, err := st.Info(ctx(t)); err != nil || info.State.Msgs != 0 {
		t.Errorf("events stream: %+v %v", info, err)
	}

	// Each dropped command request is audited, naming the reply subject.
	dropped := map[string]int{}
	for _, a := range b.audits()[before:] {
		if a.Audit.Code == CodeBadReply {
			if a.Audit.Phase != PhaseRefused || a.Audit.Key != "" {
				t.Errorf("drop audit %+v", a.Audit)
			}
			dropped[a.Audit.Reply]++
		}
	}
	total := 0
	for _, reply := range append(targets, "") {
		want := 3
		if reply == "" {
			want = 1
		}
		if dropped[reply] != want {
			t.Errorf("%d drops audited for reply %q, want %d", dropped[reply], reply, want)
		}
		total += dropped[reply]
	}
	if total != sent {
		t.Errorf("%d drops audited, %d sent", total, sent)
	}
	if got := b.argv(); len(got) != 0 {
		t.Errorf("dropped requests ran occtl: %q", got)
	}
}

// With a custom inbox prefix configured, a request whose reply is under
// it is answered, and one under nats.go's default _INBOX is dropped.
func TestCustomInboxPrefix(t *testing.T) {
	b := newBedWith(t, &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{"_INBOX_ops.>", "_INBOX.>"}}})
	b.inbox = []string{"_INBOX_ops"}
	b.start()
	nc, err := nats.Connect(b.url, nats.UserInfo("admin", "admin-pw"), nats.CustomInboxPrefix("_INBOX_ops"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &Client{NC: nc, Prefix: testPrefix, Key: b.ro}

	plain := b.connect("admin", "admin-pw", nil)
	inbox := plain.NewRespInbox() // _INBOX.…
	sub, err := plain.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := c.Sign(testServer, "kicked", nil)
	if err := plain.PublishRequest(Subject(testPrefix, testServer, "kicked"), inbox, body); err != nil {
		t.Fatal(err)
	}
	plain.Flush()
	ok(t)(c.Do(ctx(t), testServer, "kicked", nil)) // handled after the one above
	plain.Flush()
	if n, _, _ := sub.Pending(); n != 0 {
		t.Fatalf("%d answers under _INBOX with only _INBOX_ops allowed", n)
	}
	var drops int
	for _, a := range b.audits() {
		if a.Audit.Code == CodeBadReply && strings.HasPrefix(a.Audit.Reply, "_INBOX.") {
			drops++
		}
	}
	if drops != 1 {
		t.Errorf("%d drops audited, want 1", drops)
	}
}

// A client with its own InboxPrefix (the web console on the ledger's
// connection) gets its answers, and discovery's, under that prefix, which
// is all the agent may publish to; the same connection's own inbox gets
// none (the service drops it as a foreign reply subject); a server that
// is not there is reported as such, as with a plain request.
func TestClientInboxPrefix(t *testing.T) {
	b := newBedWith(t, &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"_OPS.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{testPrefix + ".cmd." + testServer + ".>", "$SRV.>"}},
	})
	b.inbox = []string{"_OPS"}
	b.start()
	nc := b.connect("admin", "admin-pw", nil) // its own inbox is nats.go's _INBOX
	c := &Client{NC: nc, Prefix: testPrefix, Key: b.rw, InboxPrefix: "_OPS.console"}
	ok(t)(c.Do(ctx(t), testServer, "kicked", nil))
	found, err := c.Discover(ctx(t), 2*time.Second)
	if err != nil || len(found) != 1 || found[0].ServerID != testServer {
		t.Fatalf("discovery under the prefix: %+v %v", found, err)
	}
	if _, err := c.Do(ctx(t), "nosuch", "kicked", nil); !errors.Is(err, ErrNoServer) {
		t.Errorf("a server that is not there: %v, want ErrNoServer", err)
	}
	plain := &Client{NC: nc, Prefix: testPrefix, Key: b.rw}
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if rep, err := plain.Do(short, testServer, "kicked", nil); err == nil {
		t.Fatalf("answered under _INBOX with only _OPS allowed: %+v", rep)
	}
}
