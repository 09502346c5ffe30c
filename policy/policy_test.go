package policy

import (
	"math"
	"strings"
	"testing"
	"time"
)

func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t, err = time.Parse(time.DateOnly, s)
	}
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name       string
		p          Period
		now        string
		start, end string
	}{
		{"daily", Period{Kind: Daily}, "2026-11-24T13:05:00Z", "2026-11-24", "2026-11-25"},
		{"daily at midnight", Period{Kind: Daily}, "2026-11-24T00:00:00Z", "2026-11-24", "2026-11-25"},
		{"monthly from the 1st", Period{Monthly, 1}, "2026-11-24T13:05:00Z", "2026-11-01", "2026-12-01"},
		{"monthly from the 15th, after it", Period{Monthly, 15}, "2026-11-24T13:05:00Z", "2026-11-15", "2026-12-15"},
		{"monthly from the 15th, before it", Period{Monthly, 15}, "2026-11-14T23:59:59Z", "2026-10-15", "2026-11-15"},
		{"monthly from the 15th, on it", Period{Monthly, 15}, "2026-11-15T00:00:00Z", "2026-11-15", "2026-12-15"},
		{"monthly across the year", Period{Monthly, 10}, "2027-01-05T00:00:00Z", "2026-12-10", "2027-01-10"},
		{"monthly from the 31st in February", Period{Monthly, 31}, "2027-02-28T12:00:00Z", "2027-02-28", "2027-03-31"},
		{"monthly from the 31st before February's end", Period{Monthly, 31}, "2027-02-27T12:00:00Z", "2027-01-31", "2027-02-28"},
		{"monthly from the 31st in April", Period{Monthly, 31}, "2026-04-30T01:00:00Z", "2026-04-30", "2026-05-31"},
		{"monthly from the 29th, leap year", Period{Monthly, 29}, "2028-02-29T01:00:00Z", "2028-02-29", "2028-03-29"},
		{"weekly from Monday on a Tuesday", Period{Weekly, 1}, "2026-11-24T10:00:00Z", "2026-11-23", "2026-11-30"},
		{"weekly from Monday on a Monday", Period{Weekly, 1}, "2026-11-23T00:00:00Z", "2026-11-23", "2026-11-30"},
		{"weekly from Monday on a Sunday", Period{Weekly, 1}, "2026-11-29T23:00:00Z", "2026-11-23", "2026-11-30"},
		{"weekly from Sunday on a Sunday", Period{Weekly, 7}, "2026-11-29T23:00:00Z", "2026-11-29", "2026-12-06"},
		{"weekly from Sunday on a Saturday", Period{Weekly, 7}, "2026-11-28T23:00:00Z", "2026-11-22", "2026-11-29"},
		{"not UTC in, UTC out", Period{Kind: Daily}, "2026-11-24T23:30:00-05:00", "2026-11-25", "2026-11-26"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, e := tc.p.Window(day(tc.now))
			if !s.Equal(day(tc.start)) || !e.Equal(day(tc.end)) {
				t.Fatalf("window = [%s, %s), want [%s, %s)", s.Format(time.DateOnly), e.Format(time.DateOnly), tc.start, tc.end)
			}
			if s.Location() != time.UTC || e.Location() != time.UTC {
				t.Fatal("window not in UTC")
			}
		})
	}
	s, e := Period{Kind: Lifetime}.Window(day("2026-11-24"))
	if !s.IsZero() || !e.IsZero() {
		t.Fatalf("lifetime window = [%v, %v), want zero both", s, e)
	}
}

// Every instant of a long stretch is inside its own window, and windows
// follow each other without gaps.
func TestWindowContiguous(t *testing.T) {
	for _, p := range []Period{{Monthly, 1}, {Monthly, 31}, {Monthly, 29}, {Weekly, 3}, {Kind: Daily}} {
		now := day("2026-01-01T06:00:00Z")
		_, prevEnd := p.Window(now.AddDate(0, 0, -1))
		for range 3 * 366 {
			s, e := p.Window(now)
			if now.Before(s) || !now.Before(e) {
				t.Fatalf("%s: %s not in [%s, %s)", p, now, s, e)
			}
			if s.After(prevEnd) {
				t.Fatalf("%s: gap before %s (previous ended %s)", p, s, prevEnd)
			}
			prevEnd = e
			now = now.AddDate(0, 0, 1)
		}
	}
}

func TestParsePeriod(t *testing.T) {
	ok := map[string]Period{"monthly": {Monthly, 1}, "monthly:15": {Monthly, 15}, "Weekly:sun": {Weekly, 7},
		"weekly": {Weekly, 1}, "daily": {Kind: Daily}, "lifetime": {Kind: Lifetime}}
	for in, want := range ok {
		got, err := ParsePeriod(in)
		if err != nil || got != want {
			t.Errorf("ParsePeriod(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yearly", "monthly:0", "monthly:32", "weekly:8", "weekly:funday", "daily:3", "monthly:x"} {
		if _, err := ParsePeriod(in); err == nil {
			t.Errorf("ParsePeriod(%q) accepted", in)
		}
	}
}

func TestParseBytes(t *testing.T) {
	ok := map[string]int64{"500MiB": 500 << 20, "20GB": 20e9, "1.5 TiB": 3 << 39, "5g": 5 << 30, "4096": 4096, "10kb": 10000, "7B": 7}
	for in, want := range ok {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-5MiB", "5 parsecs", "2EiB", "99999999999999999999", "1e30"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}

func TestReached(t *testing.T) {
	tests := []struct {
		used, limit int64
		pct         int
		want        bool
	}{
		{79, 100, 80, false}, {80, 100, 80, true}, {100, 100, 100, true}, {99, 100, 100, false},
		{4, 5, 80, true}, {3, 5, 80, false},
		{math.MaxInt64, MaxBytes, 100, true}, {MaxBytes / 5 * 4, MaxBytes, 80, false}, {MaxBytes/5*4 + 1, MaxBytes, 80, true}, // 80% of 2^60 is 922337203685477580.8
		{-3, 10, 80, false}, {5, 0, 80, false},
	}
	for _, tc := range tests {
		if got := Reached(tc.used, tc.limit, tc.pct); got != tc.want {
			t.Errorf("Reached(%d, %d, %d) = %v", tc.used, tc.limit, tc.pct, got)
		}
	}
}

func TestMerge(t *testing.T) {
	grp := &Policy{Scope: ScopeGroup, Name: "staff",
		Quota:    &Quota{Bytes: 10 << 30, Direction: DirTotal, Period: Period{Monthly, 1}},
		Sessions: &SessionLimit{Max: 2, OnExcess: ExcessRefuse},
		Expiry:   &Expiry{DaysAfterFirstUse: 30}}
	usr := &Policy{Scope: ScopeUser, Name: "alice",
		Quota:    &Quota{Bytes: 1 << 30, Direction: DirIn, Period: Period{Kind: Daily}},
		Sessions: &SessionLimit{Off: true}}
	e := Merge("alice", "staff", usr, grp)
	if e.Quota == nil || e.Quota.Bytes != 1<<30 || e.From[KindQuota] != ScopeUser {
		t.Errorf("quota: the user's own must override the group's: %+v from %s", e.Quota, e.From[KindQuota])
	}
	if e.Sessions != nil || e.From[KindSessions] != ScopeUser {
		t.Errorf("sessions: the user's explicit off must override the group's limit: %+v", e.Sessions)
	}
	if e.Expiry == nil || e.Expiry.DaysAfterFirstUse != 30 || e.From[KindExpiry] != ScopeGroup {
		t.Errorf("expiry: not set on the user, must come from the group: %+v", e.Expiry)
	}
	if e.Time != nil || e.From[KindTime] != "" {
		t.Errorf("time: set nowhere, must be absent: %+v", e.Time)
	}
	if e := Merge("bob", "", nil, nil); e.Limited() {
		t.Error("no policies must mean no limits")
	}
	if e := Merge("carol", "staff", nil, grp); e.Quota.Bytes != 10<<30 || e.Sessions.Max != 2 {
		t.Errorf("group only: %+v", e)
	}
}

func TestApplyArgs(t *testing.T) {
	p := Policy{Scope: ScopeUser, Name: "alice"}
	if err := ApplyArgs(&p, map[string]string{"quota": "5GiB", "quota_period": "monthly:15", "sessions": "1", "on_excess": "newest", "expire": "2026-12-31"}); err != nil {
		t.Fatal(err)
	}
	if p.Quota.Bytes != 5<<30 || p.Quota.Direction != DirTotal || p.Quota.Period != (Period{Monthly, 15}) {
		t.Errorf("quota: %+v", p.Quota)
	}
	if p.Sessions.Max != 1 || p.Sessions.OnExcess != ExcessNewest {
		t.Errorf("sessions: %+v", p.Sessions)
	}
	if !p.Expiry.At.Equal(day("2027-01-01")) {
		t.Errorf("expire 2026-12-31 must stop the account at 2027-01-01T00:00Z, got %s", p.Expiry.At)
	}
	// Changing the amount keeps the period and direction already set.
	if err := ApplyArgs(&p, map[string]string{"quota": "6GiB"}); err != nil || p.Quota.Period.Day != 15 {
		t.Fatalf("quota change lost the period: %+v, %v", p.Quota, err)
	}
	if err := ApplyArgs(&p, map[string]string{"unset": "quota,sessions", "time": "40h", "time_period": "weekly:mon"}); err != nil {
		t.Fatal(err)
	}
	if p.Quota != nil || p.Sessions != nil || p.Time.Seconds != 40*3600 || p.Time.Period != (Period{Weekly, 1}) {
		t.Errorf("unset/time: %+v", p)
	}
	if err := ApplyArgs(&p, map[string]string{"quota": "none"}); err != nil || !p.Quota.Off {
		t.Errorf("quota none: %+v, %v", p.Quota, err)
	}
	bad := []struct {
		args map[string]string
		name string // the argument the error must name
	}{
		{map[string]string{"quota": "lots"}, "quota"},
		{map[string]string{"quota": "0"}, "quota"},
		{map[string]string{"quota_period": "daily"}, "quota_period"},
		{map[string]string{"quota": "1GiB", "quota_period": "yearly"}, "quota_period"},
		{map[string]string{"quota": "1GiB", "quota_direction": "sideways"}, "quota_direction"},
		{map[string]string{"sessions": "0"}, "sessions"},
		{map[string]string{"sessions": "2", "on_excess": "coin-toss"}, "on_excess"},
		{map[string]string{"on_excess": "newest"}, "on_excess"},
		{map[string]string{"expire": "next tuesday"}, "expire"},
		{map[string]string{"expire": "0d"}, "expire"},
		{map[string]string{"warn_days": "3"}, "warn_days"},
		{map[string]string{"time": "1ms"}, "time"},
		{map[string]string{"unset": "everything"}, "unset"},
		{map[string]string{"bandwidth": "1"}, "bandwidth"},
	}
	for _, tc := range bad {
		q := Policy{Scope: ScopeUser, Name: "alice"}
		err := ApplyArgs(&q, tc.args)
		if err == nil || !strings.HasPrefix(err.Error(), tc.name+":") {
			t.Errorf("ApplyArgs(%v) = %v; want an error naming %s", tc.args, err, tc.name)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"alice", "a.b@example.com", "x-1_2+3"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-rf", ".hidden", "a..b", "a/b", "a b", "al\x00ice", strings.Repeat("x", 65), "ä"} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) accepted", bad)
		}
	}
}

// A verdict's user is any name ocserv can hand the hook (a group's
// policy covers members the command service cannot name), but never one
// that could break a line or a terminal.
func TestValidUser(t *testing.T) {
	for _, ok := range []string{"alice", "jörg", "john smith", "a/b", "-rf", ".hidden", strings.Repeat("x", 64)} {
		if err := ValidUser(ok); err != nil {
			t.Errorf("ValidUser(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "al\x00ice", "a\nb", "a\u0085b", "\xff\xfe", strings.Repeat("x", 65)} {
		if err := ValidUser(bad); err == nil {
			t.Errorf("ValidUser(%q) accepted", bad)
		}
	}
}
