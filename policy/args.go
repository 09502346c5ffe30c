package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Arguments of a policy change, as the API and ctl send them (strings,
// like every command argument). ApplyArgs reads them.
const (
	ArgScope          = "scope"           // user | group
	ArgName           = "name"            // the user or group
	ArgQuota          = "quota"           // bytes (500MiB, 20GB), or "none" (no quota, overriding the group's)
	ArgQuotaDirection = "quota_direction" // total (default) | in | out
	ArgQuotaPeriod    = "quota_period"    // monthly[:D] (default monthly:1) | weekly[:D] | daily | lifetime
	ArgExpire         = "expire"          // 2026-12-31 | RFC 3339 instant | 30d (after the first connect) | none
	ArgWarnDays       = "warn_days"       // days before expiry for the notice (default 7; -1 never)
	ArgSessions       = "sessions"        // a number, or none
	ArgOnExcess       = "on_excess"       // refuse (default) | newest
	ArgTime           = "time"            // connected time per period (40h, 30d), or none
	ArgTimePeriod     = "time_period"     // as quota_period
	ArgUnset          = "unset"           // kinds to remove from this policy (comma-separated), so the group's apply again
)

// SetArgs lists every argument ApplyArgs reads.
var SetArgs = []string{ArgScope, ArgName, ArgQuota, ArgQuotaDirection, ArgQuotaPeriod, ArgExpire, ArgWarnDays,
	ArgSessions, ArgOnExcess, ArgTime, ArgTimePeriod, ArgUnset}

// None is the argument value that sets a kind explicitly off.
const None = "none"

// ApplyArgs changes p by args: each kind given replaces that kind,
// settings given without their kind adjust the kind already set, and
// unset removes kinds. Unknown arguments are refused. The error names the
// argument.
func ApplyArgs(p *Policy, args map[string]string) error {
	for k := range args {
		if !slices.Contains(SetArgs, k) {
			return fmt.Errorf("%s: unknown argument (known: %s)", k, strings.Join(SetArgs, ", "))
		}
	}
	has := func(k string) (string, bool) { v, ok := args[k]; return strings.TrimSpace(v), ok }

	if v, ok := has(ArgUnset); ok {
		for _, k := range strings.Split(v, ",") {
			switch strings.TrimSpace(k) {
			case KindQuota:
				p.Quota = nil
			case KindExpiry, "expire":
				p.Expiry = nil
			case KindSessions:
				p.Sessions = nil
			case KindTime:
				p.Time = nil
			default:
				return fmt.Errorf("%s: %q is not a kind (quota, expiry, sessions, time)", ArgUnset, k)
			}
		}
	}

	if v, ok := has(ArgQuota); ok {
		if v == None {
			p.Quota = &Quota{Off: true}
		} else {
			n, err := ParseBytes(v)
			if err != nil {
				return fmt.Errorf("%s: %w", ArgQuota, err)
			}
			if n <= 0 {
				return fmt.Errorf("%s: must be more than 0 (use none for no quota)", ArgQuota)
			}
			q := &Quota{Bytes: n, Direction: DirTotal, Period: Period{Kind: Monthly, Day: 1}}
			if p.Quota != nil && !p.Quota.Off {
				q.Direction, q.Period = p.Quota.Direction, p.Quota.Period
			}
			p.Quota = q
		}
	}
	if v, ok := has(ArgQuotaDirection); ok {
		if p.Quota == nil || p.Quota.Off {
			return fmt.Errorf("%s: there is no quota to set it on (give quota too)", ArgQuotaDirection)
		}
		switch v {
		case DirTotal, DirIn, DirOut:
			p.Quota.Direction = v
		default:
			return fmt.Errorf("%s: %q is not total, in or out", ArgQuotaDirection, v)
		}
	}
	if v, ok := has(ArgQuotaPeriod); ok {
		if p.Quota == nil || p.Quota.Off {
			return fmt.Errorf("%s: there is no quota to set it on (give quota too)", ArgQuotaPeriod)
		}
		per, err := ParsePeriod(v)
		if err != nil {
			return fmt.Errorf("%s: %w", ArgQuotaPeriod, err)
		}
		p.Quota.Period = per
	}

	if v, ok := has(ArgExpire); ok {
		if v == None {
			p.Expiry = &Expiry{Off: true}
		} else {
			e, err := ParseExpiry(v)
			if err != nil {
				return fmt.Errorf("%s: %w", ArgExpire, err)
			}
			if p.Expiry != nil && !p.Expiry.Off {
				e.WarnDays = p.Expiry.WarnDays
			}
			p.Expiry = &e
		}
	}
	if v, ok := has(ArgWarnDays); ok {
		if p.Expiry == nil || p.Expiry.Off {
			return fmt.Errorf("%s: there is no expiry to set it on (give expire too)", ArgWarnDays)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < -1 || n > 366 {
			return fmt.Errorf("%s: %q is not a number of days from -1 (never) to 366", ArgWarnDays, v)
		}
		if n == 0 {
			n = DefaultWarnDays
		}
		p.Expiry.WarnDays = n
	}

	if v, ok := has(ArgSessions); ok {
		if v == None {
			p.Sessions = &SessionLimit{Off: true}
		} else {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxSessions {
				return fmt.Errorf("%s: %q is not a number of sessions from 1 to %d (or none)", ArgSessions, v, MaxSessions)
			}
			s := &SessionLimit{Max: n, OnExcess: ExcessRefuse}
			if p.Sessions != nil && !p.Sessions.Off {
				s.OnExcess = p.Sessions.OnExcess
			}
			p.Sessions = s
		}
	}
	if v, ok := has(ArgOnExcess); ok {
		if p.Sessions == nil || p.Sessions.Off {
			return fmt.Errorf("%s: there is no session limit to set it on (give sessions too)", ArgOnExcess)
		}
		switch v {
		case ExcessRefuse, ExcessNewest:
			p.Sessions.OnExcess = v
		case "newest-wins", "newest_wins":
			p.Sessions.OnExcess = ExcessNewest
		default:
			return fmt.Errorf("%s: %q is not refuse or newest", ArgOnExcess, v)
		}
	}

	if v, ok := has(ArgTime); ok {
		if v == None {
			p.Time = &TimeLimit{Off: true}
		} else {
			n, err := ParseSeconds(v)
			if err != nil {
				return fmt.Errorf("%s: %w", ArgTime, err)
			}
			t := &TimeLimit{Seconds: n, Period: Period{Kind: Monthly, Day: 1}}
			if p.Time != nil && !p.Time.Off {
				t.Period = p.Time.Period
			}
			p.Time = t
		}
	}
	if v, ok := has(ArgTimePeriod); ok {
		if p.Time == nil || p.Time.Off {
			return fmt.Errorf("%s: there is no time limit to set it on (give time too)", ArgTimePeriod)
		}
		per, err := ParsePeriod(v)
		if err != nil {
			return fmt.Errorf("%s: %w", ArgTimePeriod, err)
		}
		p.Time.Period = per
	}
	return p.Validate()
}
