package hook

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
	"github.com/ocserv-telemetry/ocserv-telemetry/internal/syncbuf"
	"github.com/ocserv-telemetry/ocserv-telemetry/kick"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy/mirror"
	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// policyBed is a spool with a verdicts mirror and a config for server a.
type policyBed struct {
	t     *testing.T
	dir   string
	spool string
	m     *mirror.Mirror
}

func newPolicyBed(t *testing.T) *policyBed {
	b := &policyBed{t: t, dir: t.TempDir()}
	b.spool = filepath.Join(b.dir, "spool")
	sp, err := spool.Open(b.spool, spool.Options{Create: true, LockWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sp.Close()
	if b.m, err = mirror.Open(b.spool); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *policyBed) config(extra string) string {
	p := filepath.Join(b.dir, "agent.env")
	os.WriteFile(p, []byte("SERVER_ID=a\nSPOOL_DIR="+b.spool+"\nPOLICY_MAX_AGE=30s\n"+extra), 0o600)
	return p
}

// connect runs the hook for a connect of user and returns its exit
// status and the event it wrote.
func (b *policyBed) run(cfg, reason, user string) (int, events.Event, string) {
	return b.runEnv(cfg, map[string]string{"REASON": reason, "ID": "4711", "DEVICE": "vpns0", "USERNAME": user, "IP_REAL": "192.0.2.10"})
}

func (b *policyBed) runEnv(cfg string, env map[string]string) (int, events.Event, string) {
	b.t.Helper()
	var stderr syncbuf.Buffer
	code := -1
	r := &Run{Args: []string{"--config", cfg}, Stderr: &stderr, Start: time.Now(), Exit: func(c int) { code = c }, Env: env}
	r.Main()
	f, err := os.Open(filepath.Join(b.spool, spool.QueueFile))
	if err != nil {
		b.t.Fatal(err)
	}
	defer f.Close()
	var last events.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		last = events.Event{}
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			b.t.Fatal(err)
		}
	}
	return code, last, stderr.String()
}

func (b *policyBed) fresh() { b.stamp(time.Now()) }
func (b *policyBed) stamp(t time.Time) {
	if err := b.m.Touch(t, time.Now()); err != nil {
		b.t.Fatal(err)
	}
}

func (b *policyBed) put(v policy.Verdict) {
	v.V = policy.VerdictVersion
	if err := b.m.Put(v); err != nil {
		b.t.Fatal(err)
	}
}

func TestPolicyRefusals(t *testing.T) {
	later := time.Now().Add(24 * time.Hour)
	past := time.Now().Add(-time.Minute)
	tests := []struct {
		name    string
		conf    string
		setup   func(b *policyBed)
		user    string
		refused bool
		reason  string // the event's verdict reason
		mirror  string // the event's verdict mirror state ("" : no verdict field)
		refusal string // in the event's refusal
	}{
		{"policy off: the mirror is not read", "", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Reason: policy.ReasonQuota, Message: "monthly quota used"})
		}, "alice", false, "", "", ""},
		{"no verdict: allowed", "POLICY=on\n", func(b *policyBed) { b.fresh() }, "bob", false, "", mirror.StateFresh, ""},
		{"denied for quota", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Reason: policy.ReasonQuota, Message: "monthly traffic quota of 5.0 MiB (total) used", Until: &later})
		}, "alice", true, policy.ReasonQuota, mirror.StateFresh, "policy: monthly traffic quota of 5.0 MiB (total) used (until "},
		{"a group member the command service cannot name is refused all the same", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "jörg smith", Reason: policy.ReasonQuota, Message: "daily traffic quota of 1.0 MiB (total) used", Until: &later})
		}, "jörg smith", true, policy.ReasonQuota, mirror.StateFresh, "policy: daily traffic quota"},
		{"another user's verdict decides nothing (names differ by case)", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Reason: policy.ReasonQuota, Message: "daily quota used", Until: &later})
		}, "Alice", false, "", mirror.StateFresh, ""},
		{"expired", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Reason: policy.ReasonExpired, Message: "the account expired on 2026-01-01T00:00:00Z"})
		}, "alice", true, policy.ReasonExpired, mirror.StateFresh, "policy: the account expired"},
		{"a denial whose until passed lifts by itself", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Reason: policy.ReasonQuota, Message: "daily quota used", Until: &past})
		}, "alice", false, "", mirror.StateFresh, ""},
		{"session limit reached on other servers", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Allowed: true, Sessions: &policy.SessionsVerdict{Max: 1, OnExcess: policy.ExcessRefuse, Held: map[string]int{"b": 1}}})
		}, "alice", true, ReasonSessionLimit, mirror.StateFresh, policy.RefusalSessionLimit},
		{"session limit held on this server: left to ocserv and the ledger", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Allowed: true, Sessions: &policy.SessionsVerdict{Max: 1, OnExcess: policy.ExcessRefuse, Held: map[string]int{"a": 1}}})
		}, "alice", false, "", mirror.StateFresh, ""},
		{"newest wins admits", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Allowed: true, Sessions: &policy.SessionsVerdict{Max: 1, OnExcess: policy.ExcessNewest, Held: map[string]int{"b": 1}}})
		}, "alice", false, "", mirror.StateFresh, ""},
		{"stale, admit: a denial decides nothing", "POLICY=on\n", func(b *policyBed) {
			b.stamp(time.Now().Add(-31 * time.Second))
			b.put(policy.Verdict{User: "alice", Reason: policy.ReasonQuota, Message: "monthly quota used"})
		}, "alice", false, "", mirror.StateStale, ""},
		{"stale, refuse: everyone is refused", "POLICY=on\nPOLICY_STALE=refuse\n", func(b *policyBed) {
			b.stamp(time.Now().Add(-31 * time.Second))
		}, "bob", true, ReasonStale, mirror.StateStale, policy.RefusalStale},
		{"never synced, admit", "POLICY=on\n", func(b *policyBed) {}, "bob", false, "", mirror.StateMissing, ""},
		{"never synced, refuse", "POLICY=on\nPOLICY_STALE=refuse\n", func(b *policyBed) {}, "bob", true, ReasonStale, mirror.StateMissing, policy.RefusalStale},
		{"an entry others could write is not trusted", "POLICY=on\nPOLICY_STALE=refuse\n", func(b *policyBed) {
			b.fresh()
			b.put(policy.Verdict{User: "alice", Allowed: true, Sessions: &policy.SessionsVerdict{Max: 5, OnExcess: policy.ExcessRefuse}})
			os.Chmod(filepath.Join(b.m.Dir(), mirror.FileName("alice")), 0o666)
		}, "alice", true, ReasonStale, mirror.StateDamaged, policy.RefusalStale},
		{"a garbage entry is not trusted (admit)", "POLICY=on\n", func(b *policyBed) {
			b.fresh()
			os.WriteFile(filepath.Join(b.m.Dir(), mirror.FileName("alice")), []byte("{\"user\":\"mallory\"}"), 0o640)
		}, "alice", false, "", mirror.StateDamaged, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newPolicyBed(t)
			tc.setup(b)
			code, ev, stderr := b.run(b.config(tc.conf), "connect", tc.user)
			if (code == ExitRefuse) != tc.refused || code != ExitAdmit && code != ExitRefuse {
				t.Fatalf("exit %d, want refused=%v; stderr %s", code, tc.refused, stderr)
			}
			if ev.Type != events.Connect || ev.Admitted == nil || *ev.Admitted == tc.refused {
				t.Fatalf("event %+v: admitted must be %v", ev, !tc.refused)
			}
			if !strings.HasPrefix(ev.Refusal, tc.refusal) || (tc.refusal == "") != (ev.Refusal == "") {
				t.Errorf("refusal %q, want it to start with %q", ev.Refusal, tc.refusal)
			}
			if tc.mirror == "" {
				if ev.Verdict != nil {
					t.Errorf("POLICY off must leave no verdict in the event: %+v", ev.Verdict)
				}
				return
			}
			v := ev.Verdict
			if v == nil || v.Mirror != tc.mirror || v.Allowed == tc.refused || v.Reason != tc.reason {
				t.Fatalf("event verdict %+v, want mirror %s, reason %q", v, tc.mirror, tc.reason)
			}
			if tc.mirror != mirror.StateFresh && v.StaleMode == "" {
				t.Error("a mirror that is not fresh must be flagged with the stale mode applied")
			}
			if tc.mirror == mirror.StateStale && v.AgeMS < 30000 {
				t.Errorf("age %d ms, want the mirror's age (> 30 s)", v.AgeMS)
			}
		})
	}
}

// Only connects are checked: a denied user's disconnect is recorded as
// always.
func TestPolicyOnlyAtConnect(t *testing.T) {
	b := newPolicyBed(t)
	b.fresh()
	b.put(policy.Verdict{User: "alice", Reason: policy.ReasonQuota, Message: "used"})
	code, ev, _ := b.run(b.config("POLICY=on\n"), "disconnect", "alice")
	if code != ExitAdmit || ev.Type != events.Disconnect || ev.Verdict != nil {
		t.Fatalf("disconnect: exit %d, event %+v", code, ev)
	}
}

// A kick the ledger's policy put says it is the policy's, not an
// operator's.
func TestPolicyKickRefusal(t *testing.T) {
	b := newPolicyBed(t)
	if err := kick.Add(b.spool, kick.Entry{User: "alice", Reason: "monthly traffic quota used", At: time.Now(), Source: kick.SourcePolicy}); err != nil {
		t.Fatal(err)
	}
	code, ev, _ := b.run(b.config(""), "connect", "alice")
	if code != ExitRefuse || ev.Refusal != "policy: monthly traffic quota used" {
		t.Fatalf("exit %d, refusal %q", code, ev.Refusal)
	}
}

// What a VPN user controls reaches the hook's environment (their client's
// host name and user agent, the group they pick with select-group), and
// ocserv's children inherit ocserv's own environment: none of it changes
// what the policy decides. The configuration comes from the file alone,
// and the verdict is the user's whatever group they choose this time.
func TestPolicyIgnoresTheEnvironment(t *testing.T) {
	b := newPolicyBed(t)
	b.fresh()
	later := time.Now().Add(time.Hour)
	b.put(policy.Verdict{User: "alice", Reason: policy.ReasonQuota, Message: "daily traffic quota of 1.0 MiB (total) used (group trial)", Until: &later})
	elsewhere := t.TempDir()
	env := map[string]string{"REASON": "connect", "ID": "4711", "DEVICE": "vpns0", "USERNAME": "alice", "IP_REAL": "192.0.2.10",
		"GROUPNAME": "staff", "HOSTNAME": "POLICY=off", "USER_AGENT": "AnyConnect\nPOLICY_STALE=admit",
		// As if set in ocserv's own environment.
		"POLICY": "off", "POLICY_STALE": "admit", "POLICY_MAX_AGE": "1000h", "SPOOL_DIR": elsewhere, "OCSERV_TELEMETRY_CONFIG": filepath.Join(elsewhere, "agent.env")}
	code, ev, stderr := b.runEnv(b.config("POLICY=on\n"), env)
	if code != ExitRefuse || !strings.HasPrefix(ev.Refusal, "policy: daily traffic quota") {
		t.Fatalf("exit %d, refusal %q: the environment changed the decision; stderr %s", code, ev.Refusal, stderr)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("the hook wrote where the environment pointed: %v", ents)
	}
	// And a stale mirror in refuse mode stays refuse mode.
	b.stamp(time.Now().Add(-time.Hour))
	env["USERNAME"] = "bob"
	code, ev, _ = b.runEnv(b.config("POLICY=on\nPOLICY_STALE=refuse\n"), env)
	if code != ExitRefuse || ev.Verdict == nil || ev.Verdict.StaleMode != mirror.StaleRefuse {
		t.Fatalf("stale mirror, refuse mode, POLICY_STALE=admit in the environment: exit %d, verdict %+v", code, ev.Verdict)
	}
}
