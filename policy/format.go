package policy

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

var byteUnits = []struct {
	name string
	n    int64
}{
	{"eib", 1 << 60}, {"pib", 1 << 50}, {"tib", 1 << 40}, {"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10},
	{"eb", 1e18}, {"pb", 1e15}, {"tb", 1e12}, {"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3},
	{"e", 1 << 60}, {"p", 1 << 50}, {"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10},
	{"b", 1}, {"", 1},
}

// ParseBytes reads an amount of bytes: a number with an optional unit,
// binary (KiB, MiB, GiB, TiB, or K, M, G, T) or decimal (kB, MB, GB, TB);
// "1.5GiB" is allowed. Case does not matter.
func ParseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, u := range byteUnits {
		num, ok := strings.CutSuffix(t, u.name)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		if num == "" {
			break
		}
		if n, err := strconv.ParseInt(num, 10, 64); err == nil {
			hi, lo := bits.Mul64(uint64(n), uint64(u.n))
			if n < 0 || hi != 0 || lo > MaxBytes {
				return 0, fmt.Errorf("%q is more than %s", s, FormatBytes(MaxBytes))
			}
			return int64(lo), nil
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || f < 0 {
			return 0, fmt.Errorf("%q is not an amount of bytes (e.g. 500MiB, 20GB, 1.5TiB)", s)
		}
		if f*float64(u.n) > MaxBytes {
			return 0, fmt.Errorf("%q is more than %s", s, FormatBytes(MaxBytes))
		}
		return int64(f * float64(u.n)), nil
	}
	return 0, fmt.Errorf("%q is not an amount of bytes (e.g. 500MiB, 20GB, 1.5TiB)", s)
}

// FormatBytes writes n in binary units with up to one decimal: "5.0 GiB".
func FormatBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	i := -1
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i]
}

// ParseSeconds reads a duration of connected time: Go's form ("40h",
// "90m") or days ("30d").
func ParseSeconds(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(t, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > MaxDays {
			return 0, fmt.Errorf("%q is not a number of days (1 to %d)", s, MaxDays)
		}
		return int64(n) * 86400, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("%q is not a duration of at least 1s (e.g. 40h, 90m, 30d)", s)
	}
	if d/time.Second > MaxSeconds {
		return 0, fmt.Errorf("%q is longer than %d days", s, MaxDays)
	}
	return int64(d / time.Second), nil
}

// FormatDuration writes seconds as "40h0m0s", or days when whole.
func FormatDuration(secs int64) string {
	if secs >= 86400 && secs%86400 == 0 {
		return strconv.FormatInt(secs/86400, 10) + "d"
	}
	return (time.Duration(secs) * time.Second).String()
}

// ParseExpiry reads an expiry: a date ("2026-12-31": the account works
// through that UTC day and stops at the next midnight), an instant (RFC
// 3339), or a number of days after the first connect ("30d").
func ParseExpiry(s string) (Expiry, error) {
	t := strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(t, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > MaxDays {
			return Expiry{}, fmt.Errorf("%q: days after the first connect must be 1 to %d (e.g. 30d)", s, MaxDays)
		}
		return Expiry{DaysAfterFirstUse: n}, nil
	}
	if day, err := time.Parse(time.DateOnly, t); err == nil {
		return Expiry{At: day.AddDate(0, 0, 1)}, nil
	}
	at, err := time.Parse(time.RFC3339, t)
	if err != nil {
		return Expiry{}, fmt.Errorf("%q is not a date (2026-12-31), an instant (RFC 3339) or a number of days after the first connect (30d)", s)
	}
	return Expiry{At: at.UTC()}, nil
}

// Reached reports whether used is at least pct percent of limit, exactly
// (no floating point, no overflow).
func Reached(used, limit int64, pct int) bool {
	if limit <= 0 {
		return false
	}
	if used < 0 {
		used = 0
	}
	uh, ul := bits.Mul64(uint64(used), 100)
	lh, ll := bits.Mul64(uint64(limit), uint64(pct))
	return uh > lh || uh == lh && ul >= ll
}
