package testbed

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"
)

// sink is a TCP server inside the server namespace that counts what each
// connection sends and answers with the count (8 bytes, big endian) once
// the sender has closed its side.
type sink struct {
	ln   net.Listener
	port int
	wg   sync.WaitGroup
}

// trafficSink starts the bed's sink on first use. It listens on every
// address of the server namespace, so tunnel traffic to TunnelServerIP
// reaches it.
func (b *Bed) trafficSink() (*sink, error) {
	b.sinkOnce.Do(func() {
		var ln net.Listener
		b.sinkErr = inNetns(b.serverNS, func() error {
			var err error
			ln, err = net.Listen("tcp", "0.0.0.0:0")
			return err
		})
		if b.sinkErr != nil {
			return
		}
		s := &sink{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
		s.wg.Add(1)
		go s.serve()
		b.mu.Lock()
		b.sink = s
		b.mu.Unlock()
	})
	return b.sink, b.sinkErr
}

func (s *sink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(90 * time.Second))
			n, err := io.Copy(io.Discard, c)
			if err != nil {
				return
			}
			var reply [8]byte
			binary.BigEndian.PutUint64(reply[:], uint64(n))
			_, _ = c.Write(reply[:])
		}()
	}
}

// close stops the listener and waits (bounded by the connections'
// deadlines) for the handlers.
func (s *sink) close() {
	s.ln.Close()
	s.wg.Wait()
}
