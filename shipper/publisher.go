// Package shipper owns the delivery loop: it drains the spool to a
// Publisher (JetStream in production, see package natsjs), keeps the
// per-chunk acknowledgement progress, deletes a chunk only once every event
// in it is acknowledged, enforces the spool's size cap and sets malformed
// lines aside. Overflow and quarantine notices go through the spool like
// any other event, with deterministic event ids.
//
// One goroutine runs the loop (Run); everything it touches is its own, so
// there are no locks besides the one Status takes.
package shipper

// Message is one event to publish: the spool line's bytes exactly as
// written, and what the subject and headers need.
type Message struct {
	Subject string
	Data    []byte
	EventID string // Nats-Msg-Id: JetStream drops a repeat inside its duplicate window
	Seq     uint64
	SpoolID string
	Server  string
}

// Publisher is where events go.
type Publisher interface {
	// Publish sends m. done is then called exactly once, from any
	// goroutine, with nil when the message is stored and acknowledged,
	// or with the reason it is not known to be. An error returned means
	// done will not be called and nothing may have been sent.
	Publish(m Message, done func(error)) error
	// MaxPayload is the largest message the server accepts; a longer
	// line can never be delivered and is quarantined.
	MaxPayload() int64
	// Connected reports whether publishes can reach a server now. While
	// not, the loop publishes nothing: the client would only buffer the
	// messages, and chunks with publishes in flight cannot be dropped
	// when the spool reaches its cap.
	Connected() bool
	// State names the connection's state for the status file.
	State() string
}
