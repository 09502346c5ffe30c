package console

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimiter bounds login attempts per client address and per account
// name, each with its own token bucket: a guesser spreading over many
// names from one address, or over many addresses at one name, is slowed
// either way. An attempt is charged before the password is hashed, so a
// flood costs no hashing either.
type loginLimiter struct {
	every time.Duration // one attempt regained per every
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// maxBuckets bounds the map; full buckets (nobody's recent attempts) are
// dropped past it, which forgets nothing that matters.
const maxBuckets = 10000

func newLoginLimiter(every time.Duration, burst int) *loginLimiter {
	return &loginLimiter{every: every, burst: burst, buckets: map[string]*rate.Limiter{}}
}

// allow charges one attempt to every key, all or none, and returns 0 when
// allowed or how long to wait otherwise.
func (l *loginLimiter) allow(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var rs []*rate.Reservation
	var wait time.Duration
	for _, k := range keys {
		r := l.bucket(k, now).ReserveN(now, 1)
		rs = append(rs, r)
		if d := r.DelayFrom(now); d > wait {
			wait = d
		}
	}
	if wait > 0 {
		for _, r := range rs {
			r.CancelAt(now)
		}
	}
	return wait
}

func (l *loginLimiter) bucket(k string, now time.Time) *rate.Limiter {
	if b, ok := l.buckets[k]; ok {
		return b
	}
	if len(l.buckets) >= maxBuckets {
		for key, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.buckets, key)
			}
		}
	}
	b := rate.NewLimiter(rate.Every(l.every), l.burst)
	l.buckets[k] = b
	return b
}
