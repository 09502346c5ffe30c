package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/cmdsvc"
	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

// Client signs and sends queries (ctl, the tests).
type Client struct {
	NC     *nats.Conn
	Prefix string
	Key    nkeys.KeyPair
	TTL    time.Duration // each request's validity (default 60s)
	// InboxPrefix, when set, is where the answers come back instead of
	// the connection's own inbox (the console on the ledger's own
	// connection; cmdsvc.Client.InboxPrefix says why).
	InboxPrefix string
}

// ErrNoLedger: no ledger instance answers.
var ErrNoLedger = errors.New("no ledger answers (is ocserv-telemetry-ledger running, on this NATS and subject prefix?)")

// Do signs action with args and returns the reply; a reply carrying an
// error is returned as the Reply (OK false), err is for not getting one.
func (c *Client) Do(ctx context.Context, action string, args map[string]string) (*cmdsvc.Reply, error) {
	return c.DoAs(ctx, "", action, args)
}

// DoAs is Do for a service key acting for a person (the web console for
// its logged-in user): actor goes into the signed command, and the ledger
// records it with the key's name on what the request changes (a policy's
// updated_by, a reset's by).
func (c *Client) DoAs(ctx context.Context, actor, action string, args map[string]string) (*cmdsvc.Reply, error) {
	ttl := c.TTL
	if ttl <= 0 {
		ttl = 60 * time.Second
	}
	subj := Subject(c.Prefix, action)
	cmd := opauth.NewCommand(subj, action, args, time.Now(), ttl)
	cmd.Actor = actor
	body, err := opauth.Sign(c.Key, cmd)
	if err != nil {
		return nil, err
	}
	msg, err := cmdsvc.RequestUnder(ctx, c.NC, c.InboxPrefix, subj, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, ErrNoLedger
	}
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", action, err)
	}
	var rep cmdsvc.Reply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			return &cmdsvc.Reply{ServerID: ReplyServerID, Action: action, Error: &cmdsvc.ReplyError{Code: code, Message: msg.Header.Get(micro.ErrorHeader)}}, nil
		}
		return nil, fmt.Errorf("ledger %s: reply is not JSON: %w", action, err)
	}
	return &rep, nil
}

// Query is Do decoding a successful result into out.
func (c *Client) Query(ctx context.Context, action string, args map[string]string, out any) (*cmdsvc.Reply, error) {
	rep, err := c.Do(ctx, action, args)
	if err != nil || !rep.OK {
		return rep, err
	}
	if err := json.Unmarshal(rep.Result, out); err != nil {
		return rep, fmt.Errorf("ledger %s: result: %w", action, err)
	}
	return rep, nil
}
