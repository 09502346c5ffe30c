package cmdsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/ocserv-telemetry/ocserv-telemetry/opauth"
)

// Client signs and sends commands: what ctl (and the tests) use.
type Client struct {
	NC     *nats.Conn
	Prefix string
	Key    nkeys.KeyPair // operator key (user nkey)
	// TTL is each command's validity (default 60s).
	TTL time.Duration
	Now func() time.Time
	// InboxPrefix, when set, is where this client's answers come back
	// instead of the connection's own inbox prefix: the web console
	// shares the ledger's connection, whose inbox (its JetStream acks
	// and pulls) no host may publish to, and takes its command answers
	// under a prefix the command services may (docs/nats.md).
	InboxPrefix string
}

// ServerInfo is one command service instance found by Discover.
type ServerInfo struct {
	ServerID  string               `json:"server_id"`
	XKey      string               `json:"xkey"`
	Build     string               `json:"build,omitempty"`
	Prefix    string               `json:"prefix"`
	ID        string               `json:"instance_id"`
	Version   string               `json:"api_version"`
	Endpoints []micro.EndpointInfo `json:"endpoints,omitempty"`
}

// ErrNoServer: nothing answers on the server's command subjects.
var ErrNoServer = errors.New("no command service answers for this server")

// Do signs action with args for serverID and waits for the reply. A reply
// with an error is returned as the Reply (OK false), not as err; err is
// for not getting one.
func (c *Client) Do(ctx context.Context, serverID, action string, args map[string]string) (*Reply, error) {
	return c.do(ctx, "", serverID, action, args, nil)
}

// DoAs is Do for a service key acting for a person (the web console for
// its logged-in user): actor goes into the signed command and from there
// into the host's audit events.
func (c *Client) DoAs(ctx context.Context, actor, serverID, action string, args map[string]string) (*Reply, error) {
	return c.do(ctx, actor, serverID, action, args, nil)
}

// DoSealed is Do with one secret argument, sealed to the server's curve
// key xkey (ServerInfo.XKey) so it never travels in clear.
func (c *Client) DoSealed(ctx context.Context, serverID, action string, args map[string]string, name, secret, xkey string) (*Reply, error) {
	return c.do(ctx, "", serverID, action, args, func(a map[string]string) error { return opauth.Seal(a, name, secret, xkey) })
}

func (c *Client) do(ctx context.Context, actor, serverID, action string, args map[string]string, seal func(map[string]string) error) (*Reply, error) {
	a := map[string]string{}
	for k, v := range args {
		a[k] = v
	}
	if seal != nil {
		if err := seal(a); err != nil {
			return nil, err
		}
	}
	body, err := c.SignAs(actor, serverID, action, a)
	if err != nil {
		return nil, err
	}
	return c.Send(ctx, serverID, action, body)
}

// Sign makes a request body for action on serverID.
func (c *Client) Sign(serverID, action string, args map[string]string) ([]byte, error) {
	return c.SignAs("", serverID, action, args)
}

// SignAs is Sign with an actor (see DoAs).
func (c *Client) SignAs(actor, serverID, action string, args map[string]string) ([]byte, error) {
	ttl := c.TTL
	if ttl <= 0 {
		ttl = 60 * time.Second
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	cmd := opauth.NewCommand(Subject(c.Prefix, serverID, action), action, args, now, ttl)
	cmd.Actor = actor
	return opauth.Sign(c.Key, cmd)
}

// Send sends a request body as it is (tests send tampered ones).
func (c *Client) Send(ctx context.Context, serverID, action string, body []byte) (*Reply, error) {
	subj := Subject(c.Prefix, serverID, action)
	msg, err := c.request(ctx, subj, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%s: %w (is the commander running there, and the action known to it?)", serverID, ErrNoServer)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", serverID, action, err)
	}
	var rep Reply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		code := msg.Header.Get(micro.ErrorCodeHeader)
		if code != "" {
			return &Reply{ServerID: serverID, Action: action, Error: &ReplyError{Code: code, Message: msg.Header.Get(micro.ErrorHeader)}}, nil
		}
		return nil, fmt.Errorf("%s %s: reply is not JSON: %w", serverID, action, err)
	}
	return &rep, nil
}

// request is the connection's request, or with InboxPrefix one on an
// inbox of its own under that prefix.
func (c *Client) request(ctx context.Context, subj string, body []byte) (*nats.Msg, error) {
	return RequestUnder(ctx, c.NC, c.InboxPrefix, subj, body)
}

// RequestUnder is nc's request, or with a non-empty inboxPrefix one whose
// reply subject is a fresh inbox under that prefix instead of the
// connection's own (the console's answers on the ledger's connection,
// docs/nats.md). The ledger's query client uses it too.
func RequestUnder(ctx context.Context, nc *nats.Conn, inboxPrefix, subj string, body []byte) (*nats.Msg, error) {
	if inboxPrefix == "" {
		return nc.RequestWithContext(ctx, subj, body)
	}
	inbox := newInboxUnder(nc, inboxPrefix)
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subj, inbox, body); err != nil {
		return nil, err
	}
	msg, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	// The server's "no responders" answer (nats.go's Request maps it).
	if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
		return nil, nats.ErrNoResponders
	}
	return msg, nil
}

// newInbox is a fresh reply subject: under InboxPrefix when set,
// otherwise under the connection's own prefix.
func (c *Client) newInbox() string { return newInboxUnder(c.NC, c.InboxPrefix) }

func newInboxUnder(nc *nats.Conn, prefix string) string {
	if prefix == "" {
		return nc.NewRespInbox()
	}
	// nats.NewInbox is _INBOX.<nuid>: the same unique token, our prefix.
	return prefix + "." + strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix)
}

// Discover asks every command service instance for its info ($SRV.INFO)
// and returns what answered within wait, sorted by server_id.
func (c *Client) Discover(ctx context.Context, wait time.Duration) ([]ServerInfo, error) {
	subj, err := micro.ControlSubject(micro.InfoVerb, ServiceName, "")
	if err != nil {
		return nil, err
	}
	inbox := c.newInbox()
	sub, err := c.NC.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("discover servers: %w", err)
	}
	defer sub.Unsubscribe()
	if err := c.NC.PublishRequest(subj, inbox, nil); err != nil {
		return nil, fmt.Errorf("discover servers: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var out []ServerInfo
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the deadline: everything that answered has
		}
		var info micro.Info
		if json.Unmarshal(m.Data, &info) != nil || info.Metadata[MetaServerID] == "" {
			continue
		}
		if p := info.Metadata[MetaPrefix]; c.Prefix != "" && p != c.Prefix {
			continue // another deployment on the same NATS
		}
		out = append(out, ServerInfo{
			ServerID: info.Metadata[MetaServerID], XKey: info.Metadata[MetaXKey], Build: info.Metadata[MetaBuild],
			Prefix: info.Metadata[MetaPrefix], ID: info.ID, Version: info.Version, Endpoints: info.Endpoints,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ServerID < out[j].ServerID })
	return out, nil
}
