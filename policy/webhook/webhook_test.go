package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/sqlite"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

var secret = []byte("correct horse battery staple")

// receiver is a real HTTP server that checks every delivery's signature,
// answers with the statuses queued for it (then 200), and counts what it
// accepted per notice id.
type receiver struct {
	mu        sync.Mutex
	statuses  []int
	accepted  map[string]int
	attempts  int
	bad       []string
	lastNotic policy.Notice
	srv       *httptest.Server
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses, accepted: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts++
		if err := Verify(secret, req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			r.bad = append(r.bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var n policy.Notice
		if err := json.Unmarshal(body, &n); err != nil || n.ID != req.Header.Get(HeaderID) || req.Method != http.MethodPost {
			r.bad = append(r.bad, fmt.Sprintf("body %s, id header %s", body, req.Header.Get(HeaderID)))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if len(r.statuses) > 0 {
			st := r.statuses[0]
			r.statuses = r.statuses[1:]
			w.WriteHeader(st)
			return
		}
		r.accepted[n.ID]++
		r.lastNotic = n
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func store(t *testing.T) ledger.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	if _, err := sqlite.Migrate(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func quickRetry() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = time.Millisecond, 5*time.Millisecond, 2*time.Second
	return b
}

func notice(i int) policy.Notice {
	return policy.Notice{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Kind: policy.NoticeQuota, User: "alice",
		Time: time.Now().UTC().Add(-time.Minute), Percent: 80, Message: "alice has used 80%"}
}

// Deliveries are signed, retried after 500s, and each notice is accepted
// once, across passes and a new sink (a restart).
func TestDeliveredOnceWithRetries(t *testing.T) {
	ctx := context.Background()
	st := store(t)
	r := newReceiver(t, 500, 503, 500)
	var ns []policy.Notice
	for i := range 3 {
		ns = append(ns, notice(i))
	}
	if _, err := st.AddPolicyNotices(ctx, ns, true); err != nil {
		t.Fatal(err)
	}
	s := &Sink{URL: r.srv.URL, Secret: secret, Store: st, Retry: quickRetry, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	// A restarted sink on the same database.
	s2 := &Sink{URL: r.srv.URL, Secret: secret, Store: st, Retry: quickRetry, Log: s.Log}
	if err := s2.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Fatalf("the receiver refused deliveries: %v", r.bad)
	}
	for _, n := range ns {
		if r.accepted[n.ID] != 1 {
			t.Errorf("notice %s accepted %d times, want once", n.ID, r.accepted[n.ID])
		}
	}
	if r.attempts != 6 || s.Delivered != 3 {
		t.Errorf("%d attempts (want 3 failures + 3 deliveries), %d delivered", r.attempts, s.Delivered)
	}
	page, _ := st.PolicyNotices(ctx, ledger.PolicyNoticeQuery{})
	for _, row := range page.Items {
		if row.Webhook != ledger.WebhookDelivered {
			t.Errorf("notice %s: %s", row.Notice.ID, row.Webhook)
		}
	}
	if r.lastNotic.Percent != 80 || r.lastNotic.User != "alice" {
		t.Errorf("the body lost fields: %+v", r.lastNotic)
	}
}

// A receiver that keeps failing: the notice waits (persisted) and the
// pass stops there; one that refuses (4xx) gives the notice up.
func TestFailingReceiver(t *testing.T) {
	ctx := context.Background()
	st := store(t)
	statuses := make([]int, 1000)
	for i := range statuses {
		statuses[i] = 502
	}
	r := newReceiver(t, statuses...)
	st.AddPolicyNotices(ctx, []policy.Notice{notice(1), notice(2)}, true)
	now := time.Now()
	s := &Sink{URL: r.srv.URL, Secret: secret, Store: st, Retry: quickRetry, Later: time.Hour, Now: func() time.Time { return now },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	due, _ := st.PendingPolicyNotices(ctx, now, 10)
	if len(due) != 1 {
		t.Fatalf("%d due right after: want only the one not tried (the failing one waits an hour)", len(due))
	}
	later, _ := st.PendingPolicyNotices(ctx, now.Add(2*time.Hour), 10)
	if len(later) != 2 {
		t.Fatalf("%d due an hour later, want both", len(later))
	}
	// A refusal is final.
	r2 := newReceiver(t, http.StatusForbidden)
	st2 := store(t)
	st2.AddPolicyNotices(ctx, []policy.Notice{notice(3)}, true)
	s2 := &Sink{URL: r2.srv.URL, Secret: secret, Store: st2, Retry: quickRetry, Log: s.Log}
	s2.Pass(ctx)
	page, _ := st2.PolicyNotices(ctx, ledger.PolicyNoticeQuery{})
	if len(page.Items) != 1 || page.Items[0].Webhook != ledger.WebhookFailed || r2.attempts != 1 {
		t.Fatalf("after a 403: %+v, %d attempts", page.Items, r2.attempts)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"notice_id":"x"}`)
	now := time.Now()
	ts := now.Unix()
	sig := Sign(secret, ts, body)
	if err := Verify(secret, fmt.Sprint(ts), sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		ts   string
		sig  string
		body []byte
		key  []byte
	}{
		"tampered body": {fmt.Sprint(ts), sig, []byte(`{"notice_id":"y"}`), secret},
		"other secret":  {fmt.Sprint(ts), sig, body, []byte("guess")},
		"old replay":    {fmt.Sprint(ts - 3600), Sign(secret, ts-3600, body), body, secret},
		"ts changed":    {fmt.Sprint(ts + 1), sig, body, secret},
		"no scheme":     {fmt.Sprint(ts), sig[3:], body, secret},
		"bad ts":        {"soon", sig, body, secret},
	} {
		if err := Verify(c.key, c.ts, c.sig, c.body, now, time.Minute); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The webhook URL is often the receiver's only credential (a chat
// service's incoming-webhook path, a ?token= query). A network error
// from net/http quotes the whole URL, and the sink recorded that text as
// the notice's last error, which `ctl policy notices` hands to every
// read-only key, and logged it. The URL stays out of both now; the
// error still says what went wrong.
func TestFailureNeverRecordsTheURL(t *testing.T) {
	ctx := context.Background()
	st := store(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now: connection refused
	st.AddPolicyNotices(ctx, []policy.Notice{notice(1)}, true)
	var log bytes.Buffer
	s := &Sink{URL: "http://" + addr + "/services/T0/B0/path-s3cret?token=query-s3cret", Secret: secret, Store: st,
		Retry: func() backoff.BackOff { return &backoff.StopBackOff{} }, Log: slog.New(slog.NewTextHandler(&log, nil))}
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := st.PolicyNotices(ctx, ledger.PolicyNoticeQuery{})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("notices: %v %+v", err, page.Items)
	}
	row := page.Items[0]
	if row.Webhook != ledger.WebhookPending || !strings.Contains(row.LastError, "refused") {
		t.Fatalf("the notice's state after a refused connection: %s %q", row.Webhook, row.LastError)
	}
	if strings.Contains(row.LastError, "s3cret") {
		t.Errorf("the recorded error quotes the webhook URL: %q", row.LastError)
	}
	if !strings.Contains(log.String(), "webhook") || strings.Contains(log.String(), "s3cret") {
		t.Errorf("the log quotes the webhook URL (or says nothing):\n%s", log.String())
	}
}
