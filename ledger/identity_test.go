package ledger_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// counterColumns are session_counters' columns (not identity).
var counterColumns = []string{"bytes_in", "bytes_out", "seconds", "samples", "last_sample_at", "settled", "acct_in", "acct_out"}

// TestIdentityDiff: every field of Session is the session's uid, one
// identity column or one counter column (a field added to Session must be
// placed); changing an identity field makes IdentityDiff name exactly that
// column, and changing a counter or nothing names none. An engine that
// updates only the changed columns relies on this: a column missed here
// would never be written.
func TestIdentityDiff(t *testing.T) {
	base := ledger.Session{UID: "0190c1d2-0000-7000-8000-000000000001", LogicalUID: "0190c1d2-0000-7000-8000-000000000001",
		ServerID: "vpn1", Username: "alice", ConnectedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), State: "open", Origin: "connect"}
	if d := ledger.IdentityDiff(&base, &base); d != 0 {
		t.Fatalf("a session differs from itself in %b", d)
	}
	typ := reflect.TypeOf(base)
	seen := map[string]bool{}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		col, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		seen[col] = true
		b := base
		v := reflect.ValueOf(&b).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Int64:
			v.SetInt(v.Int() + 1)
		case reflect.Bool:
			v.SetBool(!v.Bool())
		default:
			tm := v.Interface().(time.Time)
			v.Set(reflect.ValueOf(tm.Add(time.Second)))
		}
		d := ledger.IdentityDiff(&base, &b)
		idx := slices.Index(ledger.IdentityColumns, col)
		switch {
		case col == "session_uid":
		case idx >= 0:
			if d != 1<<idx || !d.Has(idx) {
				t.Errorf("%s (column %s) changed: IdentityDiff = %b, want only bit %d", f.Name, col, d, idx)
			}
		case slices.Contains(counterColumns, col):
			if d != 0 {
				t.Errorf("counter %s changed: IdentityDiff = %b, want none", col, d)
			}
		default:
			t.Errorf("Session.%s (%q) is neither an identity nor a counter column", f.Name, col)
		}
	}
	for _, c := range ledger.IdentityColumns {
		if !seen[c] {
			t.Errorf("identity column %s is no field of Session", c)
		}
	}
	// The same instant in another zone is no change.
	b := base
	b.ConnectedAt = base.ConnectedAt.In(time.FixedZone("x", 3600))
	if d := ledger.IdentityDiff(&base, &b); d != 0 {
		t.Errorf("the same instant in another zone differs: %b", d)
	}
}
