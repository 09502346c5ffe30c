package cmdsvc

import (
	"context"
	"encoding/base64"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

// A read-only key flooding at full speed with valid, maximally long-lived
// commands cannot keep a read-write key from working: another operator's
// commands keep succeeding while the flood runs, through the real NATS
// server with its users and permissions. Before the per-key budgets, one
// shared bound of live nonces filled in seconds and every command of every
// key was refused "unavailable" until the flood's nonces expired.
//
// Two shapes of flood: at the default per-key rate (the flood is mostly
// refused rate_limited, cheaply), and with a rate high enough that the
// flood fills its key's quota of live nonces (then over_quota).
func TestReadOnlyFloodCannotStarveReadWrite(t *testing.T) {
	for _, tc := range []struct {
		name        string
		rate        float64
		burst       int
		quota       int
		floodRefuse string
	}{
		{"default rate", opauth.DefaultKeyRate, opauth.DefaultKeyBurst, opauth.DefaultKeyQuota, opauth.CodeRateLimited},
		{"quota", 100000, 100000, 200, opauth.CodeOverQuota},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t)
			b.keyRate, b.keyBurst, b.keyQuota = tc.rate, tc.burst, tc.quota
			b.start()
			flood := b.client(b.ro)
			flood.TTL = 5 * time.Minute // the longest validity the service accepts
			rw := b.client(b.rw)

			stop := make(chan struct{})
			var answered, refused atomic.Int64
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 50000; i++ { // bounded, whatever the machine
						select {
						case <-stop:
							return
						default:
						}
						c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						rep, err := flood.Do(c, testServer, "kicked", nil)
						cancel()
						if err != nil {
							continue
						}
						answered.Add(1)
						if rep.Error != nil && rep.Error.Code == tc.floodRefuse {
							refused.Add(1)
						}
					}
				}()
			}
			defer func() { close(stop); wg.Wait() }()

			// Let the flood run past its own budget (and past what the
			// old shared bound held) before the read-write operator starts.
			deadline := time.Now().Add(60 * time.Second)
			for (answered.Load() < 2000 || refused.Load() < 100) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if refused.Load() < 100 {
				t.Fatalf("in 60s the flood got %d answers, %d of them %s", answered.Load(), refused.Load(), tc.floodRefuse)
			}
			before := answered.Load()
			const writes = 20
			for i := 0; i < writes; i++ {
				rep, err := rw.Do(ctx(t), testServer, "unkick", map[string]string{"user": "alice"})
				if err != nil {
					t.Fatalf("read-write command %d during the flood: %v", i, err)
				}
				if rep.Error == nil || rep.Error.Code != CodeNotFound {
					t.Fatalf("read-write command %d during the flood: %+v (error %+v), want it run (not_found: nobody kicked)", i, rep, rep.Error)
				}
			}
			if answered.Load() == before {
				t.Fatal("the flood stopped while the read-write commands ran; nothing was shown")
			}
			roPub, _ := b.ro.PublicKey()
			if n := b.nonces.KeyLen(roPub); n > tc.quota {
				t.Errorf("the flooding key holds %d live nonces, over its quota %d", n, tc.quota)
			}
			close(stop)
			wg.Wait()
			stop = make(chan struct{})
			// Every read-write command was audited, accepted then done.
			done := 0
			for _, a := range b.audits() {
				if a.Audit.Action == "unkick" && a.Audit.Phase == PhaseDone && a.Audit.Code == CodeNotFound {
					done++
				}
			}
			if done != writes {
				t.Errorf("%d read-write commands audited as done, want %d", done, writes)
			}
			t.Logf("flood: %d answers, %d refused %s", answered.Load(), refused.Load(), tc.floodRefuse)
		})
	}
}

// Property: a refused command never consumes its nonce. Whatever the
// reason of the refusal (bad arguments, out of role, out of time, wrong
// subject, tampered, rate), the cache is unchanged after it, and the same
// key can later use that nonce in a valid command. Random cases from a
// logged seed.
func TestRefusedCommandNeverConsumesNonce(t *testing.T) {
	b := newBed(t)
	b.start()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	sign := func(kp nkeys.KeyPair, server, action string, args map[string]string, nonce string, iat time.Time, ttl time.Duration) []byte {
		c := opauth.NewCommand(Subject(testPrefix, server, action), action, args, iat, ttl)
		c.Nonce = nonce
		body, err := opauth.Sign(kp, c)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	hostile := []string{"alice;reboot", "$(id)", "a\nb", "../x", "-rf", strings.Repeat("a", 2000), "al ice", "\x00", ""}
	type refusal func(nonce string) (action string, body []byte, code string)
	kinds := []refusal{
		func(n string) (string, []byte, string) {
			return "kick", sign(b.rw, testServer, "kick", map[string]string{"user": hostile[rng.Intn(len(hostile))]}, n, time.Now(), time.Minute), CodeInvalidArgument
		},
		func(n string) (string, []byte, string) {
			return "kick", sign(b.rw, testServer, "kick", map[string]string{"user": "alice", "x" + strconv.Itoa(rng.Intn(100)): "y"}, n, time.Now(), time.Minute), CodeInvalidArgument
		},
		func(n string) (string, []byte, string) {
			return "disconnect", sign(b.rw, testServer, "disconnect", map[string]string{"user": "alice", "id": "7"}, n, time.Now(), time.Minute), CodeInvalidArgument
		},
		func(n string) (string, []byte, string) {
			return "kick", sign(b.ro, testServer, "kick", map[string]string{"user": "alice"}, n, time.Now(), time.Minute), opauth.CodeForbidden
		},
		func(n string) (string, []byte, string) {
			return "kick", sign(b.rw, testServer, "kick", map[string]string{"user": "alice"}, n, time.Now().Add(-time.Duration(10+rng.Intn(100))*time.Minute), time.Minute), opauth.CodeExpired
		},
		func(n string) (string, []byte, string) {
			return "kick", sign(b.rw, testServer, "kick", map[string]string{"user": "alice"}, n, time.Now().Add(time.Duration(1+rng.Intn(60))*time.Minute), time.Minute), opauth.CodeNotYetValid
		},
		func(n string) (string, []byte, string) {
			return "kick", sign(b.rw, testServer, "kick", map[string]string{"user": "alice"}, n, time.Now(), time.Duration(6+rng.Intn(60))*time.Minute), opauth.CodeTooLong
		},
		func(n string) (string, []byte, string) {
			return "kick", sign(b.rw, "vpn"+strconv.Itoa(2+rng.Intn(9)), "kick", map[string]string{"user": "alice"}, n, time.Now(), time.Minute), opauth.CodeWrongSubject
		},
		func(n string) (string, []byte, string) {
			return "kick", tamper(t, sign(b.rw, testServer, "kick", map[string]string{"user": "alice"}, n, time.Now(), time.Minute), `"alice"`, `"bob"`), opauth.CodeBadSignature
		},
	}
	c := b.client(b.rw)
	var refusedNonces []string
	for i := 0; i < 200; i++ {
		var raw [18]byte
		rng.Read(raw[:])
		nonce := base64.RawURLEncoding.EncodeToString(raw[:])
		k := rng.Intn(len(kinds))
		action, body, code := kinds[k](nonce)
		rep, err := c.Send(ctx(t), testServer, action, body)
		wantCode(t, rep, err, code)
		if n := b.nonces.Len(); n != 0 {
			t.Fatalf("case %d (kind %d, %s): the refused command left %d nonce(s) in the cache", i, k, code, n)
		}
		refusedNonces = append(refusedNonces, nonce)
	}
	// Each refused nonce is still free for a valid command of that key.
	for i, n := range refusedNonces[:20] {
		rep, err := c.Send(ctx(t), testServer, "unkick", sign(b.rw, testServer, "unkick", map[string]string{"user": "alice"}, n, time.Now(), time.Minute))
		wantCode(t, rep, err, CodeNotFound) // it ran: nobody is kicked
		if got := b.nonces.Len(); got != i+1 {
			t.Fatalf("after %d valid commands, %d nonces", i+1, got)
		}
	}
	if got := b.argv(); len(got) != 0 {
		t.Errorf("refused commands ran occtl: %q", got)
	}
}

// A command refused for its key's rate does not consume its nonce either:
// sent again once the bucket refilled, the same bytes run.
func TestRateLimitedCommandKeepsNonce(t *testing.T) {
	b := newBed(t)
	b.keyRate, b.keyBurst = 0.1, 1 // one command, then one more every 10s
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b.now = clock
	b.start()
	c := b.client(b.rw)
	c.Now, c.TTL = clock, 5*time.Minute
	ok(t)(c.Do(ctx(t), testServer, "kicked", nil))
	body, err := c.Sign(testServer, "unkick", map[string]string{"user": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.Send(ctx(t), testServer, "unkick", body)
	wantCode(t, rep, err, opauth.CodeRateLimited)
	if n := b.nonces.Len(); n != 1 {
		t.Fatalf("%d nonces after a rate-limited command, want 1 (the first command's)", n)
	}
	// Another key has its own bucket.
	ok(t)(b.client(b.ro).Do(ctx(t), testServer, "kicked", nil))
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	rep, err = c.Send(ctx(t), testServer, "unkick", body)
	wantCode(t, rep, err, CodeNotFound) // it ran: nobody is kicked
	rep, err = c.Send(ctx(t), testServer, "unkick", body)
	wantCode(t, rep, err, opauth.CodeReplayed) // and only now is its nonce used
	var rl int
	for _, a := range b.audits() {
		if a.Audit.Phase == PhaseRefused && a.Audit.Code == opauth.CodeRateLimited {
			rl++
		}
	}
	if rl != 1 {
		t.Errorf("%d rate_limited refusals audited, want 1", rl)
	}
}
