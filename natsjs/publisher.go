package natsjs

import (
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/shipper"
)

// Header names set on every event message besides Nats-Msg-Id.
const (
	HeaderSeq     = "Ocserv-Seq"
	HeaderSpoolID = "Ocserv-Spool-Id"
	HeaderServer  = "Ocserv-Server-Id"
)

// Publisher publishes through JetStream's asynchronous API and reports each
// acknowledgement through the callback. One goroutine waits on the ack
// futures in publication order: acks nearly always arrive in that order, and
// the shipper only advances over a contiguous acknowledged prefix anyway.
type Publisher struct {
	c       *Conn
	pending chan waiting
	once    sync.Once
	stop    chan struct{}
	done    chan struct{}
}

type waiting struct {
	f    jetstream.PubAckFuture
	done func(error)
}

// NewPublisher starts the ack waiter; Close stops it.
func NewPublisher(c *Conn, maxInFlight int) *Publisher {
	p := &Publisher{c: c, pending: make(chan waiting, maxInFlight+1), stop: make(chan struct{}), done: make(chan struct{})}
	go p.wait()
	return p
}

func (p *Publisher) wait() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		case w := <-p.pending:
			select {
			case <-w.f.Ok():
				w.done(nil)
			case err := <-w.f.Err():
				w.done(err)
			case <-p.stop:
				return
			}
		}
	}
}

// Publish implements shipper.Publisher.
func (p *Publisher) Publish(m shipper.Message, done func(error)) error {
	msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
	// Set the map directly: Header.Set would canonicalise Nats-Msg-Id
	// the same way, but costs an allocation per call.
	msg.Header[jetstream.MsgIDHeader] = []string{m.EventID}
	msg.Header[HeaderSeq] = []string{strconv.FormatUint(m.Seq, 10)}
	msg.Header[HeaderSpoolID] = []string{m.SpoolID}
	msg.Header[HeaderServer] = []string{m.Server}
	f, err := p.c.JS.PublishMsgAsync(msg)
	if err != nil {
		return err
	}
	p.pending <- waiting{f: f, done: done}
	return nil
}

// MaxPayload is the server's limit, or NATS's default before the first
// connect.
func (p *Publisher) MaxPayload() int64 {
	if n := p.c.NC.MaxPayload(); n > 0 {
		return n
	}
	return 1 << 20
}

// Connected implements shipper.Publisher.
func (p *Publisher) Connected() bool { return p.c.NC.IsConnected() }

// State implements shipper.Publisher.
func (p *Publisher) State() string { return p.c.State() }

// Close stops the waiter; callbacks of unresolved publishes are not called.
func (p *Publisher) Close() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}
