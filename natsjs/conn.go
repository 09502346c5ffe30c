// Package natsjs owns the shipper's side of NATS: the connection (servers,
// credentials, TLS, reconnecting forever), the events stream (created when
// missing, compared when present, never changed) and the JetStream
// publisher behind shipper.Publisher.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/config"
)

// Connection states, as reported in the status file and STATUS=.
const (
	StateConnecting   = "connecting"
	StateConnected    = "connected"
	StateReconnecting = "reconnecting"
	StateClosed       = "closed"
)

// Conn is a connection that reconnects forever. It is usable at once: until
// the first connect succeeds, publishes wait in the client's reconnect
// buffer, so the shipper never waits for NATS to report itself ready.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream

	log     *slog.Logger
	state   atomic.Value // string
	since   atomic.Int64 // unix nanos of the last state change
	lastMu  sync.Mutex
	lastErr string
	wake    chan struct{}
	// scrub removes the configuration's secrets from the client's error
	// text before it is logged or kept for the status file.
	scrub func(string) string
}

// Options adds what the configuration file does not hold.
type Options struct {
	Name string // client name shown by the server (nats server list / connz)
	// ReconnectWait is the base wait between reconnect attempts; a random
	// jitter up to the same amount is added. Default 500ms.
	ReconnectWait time.Duration
	// AckTimeout bounds the wait for one publish's acknowledgement (default 5s).
	AckTimeout  time.Duration
	MaxInFlight int
}

// Connect sets up the connection from cfg. It returns without waiting for a
// server; an error means the settings themselves are unusable (a missing
// credentials file, a bad seed, a bad TLS file).
func Connect(cfg config.NATS, o Options, log *slog.Logger) (*Conn, error) {
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = 500 * time.Millisecond
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	c := &Conn{log: log, wake: make(chan struct{}, 1), scrub: cfg.Scrub}
	c.setState(StateConnecting)
	opts, err := c.options(cfg, o)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		// The URLs may carry credentials: printed redacted, and the
		// client's own text scrubbed of every secret.
		return nil, fmt.Errorf("connect to NATS %s: %w", cfg.RedactedURLs(), cfg.ScrubError(err))
	}
	c.NC = nc
	if nc.IsConnected() {
		c.connected(nc, false)
	}
	jsOpts := []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(o.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout),
	}
	if cfg.Domain != "" {
		c.JS, err = jetstream.NewWithDomain(nc, cfg.Domain, jsOpts...)
	} else {
		c.JS, err = jetstream.New(nc, jsOpts...)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("set up JetStream: %w", err)
	}
	return c, nil
}

func (c *Conn) options(cfg config.NATS, o Options) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// nats.go gives up for good when a server refuses the credentials
		// twice in a row; credentials get fixed (or a server's accounts
		// reloaded) while the agent runs, so it keeps trying.
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(o.ReconnectWait, o.ReconnectWait),
		nats.ConnectHandler(func(nc *nats.Conn) { c.connected(nc, false) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { c.connected(nc, true) }),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // the closed handler says it
			}
			c.setState(StateReconnecting)
			msg := "connection lost"
			if err != nil {
				msg = c.scrub(err.Error())
				c.setErr(msg)
			}
			c.log.Warn("nats disconnected", "url", nc.ConnectedUrlRedacted(), "err", msg)
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			c.setState(StateClosed)
			c.log.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			msg := c.scrub(err.Error())
			c.setErr(msg)
			c.log.Warn("nats error", "err", msg)
		}),
		// A failed (re)connect (server down; the first refusal of the
		// credentials): logged once per distinct error, not per try.
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			msg := c.scrub(err.Error())
			if c.LastError() != msg {
				c.log.Warn("nats connect failed; retrying", "err", msg)
			}
			c.setErr(msg)
		}),
	}
	if cfg.InboxPrefix != "" {
		// Acknowledgements, API answers and pulled messages come back
		// under this prefix: a NATS user whose subscribe rights cover
		// only its own prefix reads nobody else's.
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	switch {
	case cfg.Creds != "":
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	case cfg.NKeySeed != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED %s: %w", cfg.NKeySeed, err)
		}
		opts = append(opts, o)
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("NATS_CERT and NATS_KEY must be given together")
		}
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	return opts, nil
}

func (c *Conn) connected(nc *nats.Conn, re bool) {
	if c.State() == StateConnected {
		return // ConnectHandler after a retried first connect and Connect's own check
	}
	c.setState(StateConnected)
	msg := "nats connected"
	if re {
		msg = "nats reconnected"
	}
	c.log.Info(msg, "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Conn) setState(s string) {
	c.state.Store(s)
	c.since.Store(time.Now().UnixNano())
}

func (c *Conn) setErr(s string) {
	c.lastMu.Lock()
	c.lastErr = s
	c.lastMu.Unlock()
}

// State is the connection's state, one of the State constants.
func (c *Conn) State() string { return c.state.Load().(string) }

// LastError is the last connection error seen ("" if none).
func (c *Conn) LastError() string {
	c.lastMu.Lock()
	defer c.lastMu.Unlock()
	return c.lastErr
}

// Connected signals each (re)connect, so a waiting retry can start at once
// instead of at the end of its backoff.
func (c *Conn) Connected() <-chan struct{} { return c.wake }

// Close drains nothing: the shipper has already waited for its acks.
func (c *Conn) Close() {
	if c.NC != nil {
		c.NC.Close()
	}
}

// Flush waits until the server has seen everything sent so far.
func (c *Conn) Flush(ctx context.Context) error { return c.NC.FlushWithContext(ctx) }
