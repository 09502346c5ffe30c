package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Period kinds. Every period starts at 00:00 UTC (the ledger counts usage
// per UTC day), so a window is always a whole number of days.
const (
	Monthly  = "monthly"  // from Day (1..31, clamped to the month's last day)
	Weekly   = "weekly"   // from Day (1 = Monday … 7 = Sunday, ISO 8601)
	Daily    = "daily"    // each UTC day
	Lifetime = "lifetime" // everything the ledger still keeps
)

// Period is what usage is counted over; a quota or time limit starts
// afresh at each period's start.
type Period struct {
	Kind string `json:"kind"`
	Day  int    `json:"day,omitempty"`
}

// Validate checks the period.
func (p Period) Validate() error {
	switch p.Kind {
	case Monthly:
		if p.Day < 1 || p.Day > 31 {
			return fmt.Errorf("period monthly: day %d is not 1 to 31", p.Day)
		}
	case Weekly:
		if p.Day < 1 || p.Day > 7 {
			return fmt.Errorf("period weekly: day %d is not 1 (Monday) to 7 (Sunday)", p.Day)
		}
	case Daily, Lifetime:
		if p.Day != 0 {
			return fmt.Errorf("period %s takes no day", p.Kind)
		}
	default:
		return fmt.Errorf("period %q is not monthly, weekly, daily or lifetime", p.Kind)
	}
	return nil
}

// String is the form ParsePeriod reads: "monthly:15", "weekly:1",
// "daily", "lifetime".
func (p Period) String() string {
	if p.Kind == Monthly || p.Kind == Weekly {
		return p.Kind + ":" + strconv.Itoa(p.Day)
	}
	return p.Kind
}

// ParsePeriod reads "monthly" (from the 1st), "monthly:D", "weekly" (from
// Monday), "weekly:D" (1 = Monday … 7 = Sunday, or a day name), "daily",
// "lifetime".
func ParsePeriod(s string) (Period, error) {
	kind, day, hasDay := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	p := Period{Kind: kind}
	switch kind {
	case Monthly, Weekly:
		p.Day = 1
		if hasDay {
			if d, ok := weekdays[day]; ok && kind == Weekly {
				p.Day = d
			} else {
				n, err := strconv.Atoi(day)
				if err != nil {
					return p, fmt.Errorf("period %q: day %q is not a number", s, day)
				}
				p.Day = n
			}
		}
	case Daily, Lifetime:
		if hasDay {
			return p, fmt.Errorf("period %q: %s takes no day", s, kind)
		}
	}
	return p, p.Validate()
}

var weekdays = map[string]int{"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7,
	"monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6, "sunday": 7}

// Window is the period that contains now: [Start, End). A lifetime
// period has a zero Start and a zero End (it never rolls over).
func (p Period) Window(now time.Time) (start, end time.Time) {
	now = now.UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch p.Kind {
	case Daily:
		return today, today.AddDate(0, 0, 1)
	case Weekly:
		wd := int(today.Weekday()) // 0 = Sunday
		if wd == 0 {
			wd = 7
		}
		back := (wd - p.Day + 7) % 7
		start = today.AddDate(0, 0, -back)
		return start, start.AddDate(0, 0, 7)
	case Monthly:
		start = monthDay(now.Year(), now.Month(), p.Day)
		if start.After(today) {
			y, m := now.Year(), now.Month()-1
			if m < time.January {
				y, m = y-1, time.December
			}
			start = monthDay(y, m, p.Day)
		}
		y, m := start.Year(), start.Month()+1
		if m > time.December {
			y, m = y+1, time.January
		}
		return start, monthDay(y, m, p.Day)
	}
	return time.Time{}, time.Time{}
}

// monthDay is day d of the month, or the month's last day when it is
// shorter (a period "from the 31st" starts on 30 April and 28 February).
func monthDay(y int, m time.Month, d int) time.Time {
	last := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if d > last {
		d = last
	}
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
