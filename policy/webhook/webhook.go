// Package webhook owns the notices' webhook sink (docs/policy.md,
// "Webhook"): each notice the policy engine records is POSTed once to an
// operator's URL as JSON, signed with HMAC-SHA256 over a timestamp and
// the body, retried with exponential backoff (cenkalti/backoff) while the
// receiver fails, and marked delivered in the ledger's database, so a
// restart neither loses nor repeats one. Receivers de-duplicate on the
// notice id, which stays the same across retries.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/policy"
)

// Headers of a delivery.
const (
	HeaderID        = "X-Ocserv-Notice-Id"
	HeaderTimestamp = "X-Ocserv-Timestamp" // Unix seconds
	HeaderSignature = "X-Ocserv-Signature" // "v1=" + hex HMAC-SHA256(secret, timestamp "." body)
)

// Sign is the signature header's value for body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery as a receiver should: the signature (in
// constant time) and a timestamp within tolerance of now, so a captured
// request cannot be replayed later.
func Verify(secret []byte, tsHeader, sigHeader string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %q is not a Unix time", HeaderTimestamp, tsHeader)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%s: %s away from now (tolerance %s)", HeaderTimestamp, d.Round(time.Second), tolerance)
	}
	want := Sign(secret, ts, body)
	if !strings.HasPrefix(sigHeader, "v1=") || !hmac.Equal([]byte(sigHeader), []byte(want)) {
		return fmt.Errorf("%s does not match the body", HeaderSignature)
	}
	return nil
}

// Sink delivers pending notices.
type Sink struct {
	URL    string
	Secret []byte
	Store  ledger.PolicyStore
	Client *http.Client // default: 10s timeout
	// Retry is the in-process backoff for one notice (default: 500ms
	// doubling to 10s, for at most 30s); after it, the notice waits
	// Later and is tried again, until GiveUp after its time.
	Retry  func() backoff.BackOff
	Later  time.Duration // default 5m
	GiveUp time.Duration // default 24h
	Agent  string
	Log    *slog.Logger
	Now    func() time.Time

	Delivered, Failed, Attempts int64
}

func (s *Sink) defaults() {
	if s.Client == nil {
		s.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if s.Retry == nil {
		s.Retry = func() backoff.BackOff {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval, b.Multiplier, b.MaxInterval, b.MaxElapsedTime = 500*time.Millisecond, 2, 10*time.Second, 30*time.Second
			return b
		}
	}
	if s.Later <= 0 {
		s.Later = 5 * time.Minute
	}
	if s.GiveUp <= 0 {
		s.GiveUp = 24 * time.Hour
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	if s.Agent == "" {
		s.Agent = "ocserv-telemetry-ledger"
	}
}

// Run delivers what is due, then waits for wake or a second, until ctx
// ends.
func (s *Sink) Run(ctx context.Context, wake <-chan struct{}) {
	s.defaults()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("webhook: cannot read pending notices", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// Pass delivers every due notice, oldest first, and stops at the first
// one the receiver keeps failing (it is down: the rest wait with it).
func (s *Sink) Pass(ctx context.Context) error {
	s.defaults()
	for {
		due, err := s.Store.PendingPolicyNotices(ctx, s.Now(), 100)
		if err != nil {
			return err
		}
		if len(due) == 0 {
			return nil
		}
		for _, n := range due {
			err := s.deliver(ctx, n)
			if ctx.Err() != nil {
				return nil
			}
			var mark error
			switch {
			case err == nil:
				s.Delivered++
				mark = s.Store.MarkPolicyNotice(ctx, n.ID, true, "", time.Time{})
			case isPermanent(err) || s.Now().Sub(n.Time) > s.GiveUp:
				s.Failed++
				s.Log.Warn("webhook: giving up on a notice", "id", n.ID, "kind", n.Kind, "user", n.User, "err", err.Error())
				mark = s.Store.MarkPolicyNotice(ctx, n.ID, false, err.Error(), time.Time{})
			default:
				s.Log.Warn("webhook: receiver failing; the notice waits and is sent again", "id", n.ID, "retry_in", s.Later.String(), "err", err.Error())
				if mark = s.Store.MarkPolicyNotice(ctx, n.ID, false, err.Error(), s.Now().Add(s.Later)); mark == nil {
					return nil
				}
			}
			if mark != nil {
				return mark
			}
		}
	}
}

// refused is an error sending again will not change (backoff.Retry
// returns what backoff.Permanent wrapped, so the mark is our own).
type refused struct{ error }

func isPermanent(err error) bool {
	var r refused
	return errors.As(err, &r)
}

// withoutURL drops the URL net/http quotes in its errors: it is often
// the receiver's credential (an incoming-webhook path, a token in the
// query), and the error is recorded with the notice, which read-only
// keys may list, and logged.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// deliver POSTs one notice, retrying within the backoff.
func (s *Sink) deliver(ctx context.Context, n policy.Notice) error {
	body, err := json.Marshal(n)
	if err != nil {
		return backoff.Permanent(refused{err})
	}
	try := func() error {
		s.Attempts++
		ts := s.Now().Unix()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
		if err != nil {
			return backoff.Permanent(refused{fmt.Errorf("webhook URL: %w", withoutURL(err))})
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", s.Agent)
		req.Header.Set(HeaderID, n.ID)
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, Sign(s.Secret, ts, body))
		resp, err := s.Client.Do(req)
		if err != nil {
			return fmt.Errorf("POST to the webhook: %w", withoutURL(err))
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return nil
		case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
			return fmt.Errorf("receiver answered %s", resp.Status)
		default:
			// The receiver refuses this request as it is: sending it
			// again will not change that.
			return backoff.Permanent(refused{fmt.Errorf("receiver answered %s", resp.Status)})
		}
	}
	return backoff.Retry(try, backoff.WithContext(s.Retry(), ctx))
}
