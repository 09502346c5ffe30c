package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startCluster runs three JetStream servers routed together on loopback.
func startCluster(t *testing.T) []*server.Server {
	t.Helper()
	cports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []*url.URL
	for _, p := range cports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var srvs []*server.Server
	for i := 0; i < 3; i++ {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "ocserv-test", Host: "127.0.0.1", Port: cports[i]},
			Routes:  routes,
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		srvs = append(srvs, s)
	}
	for _, s := range srvs {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("cluster node not ready")
		}
	}
	return srvs
}

func clusterURLs(srvs []*server.Server) string {
	var u []string
	for _, s := range srvs {
		u = append(u, s.ClientURL())
	}
	return strings.Join(u, ",")
}

// An R3 stream on a three-node cluster loses the node the shipper is
// connected to in the middle of a run: nothing is lost, nothing doubled.
func TestClusterNodeLoss(t *testing.T) {
	srvs := startCluster(t)
	urls := clusterURLs(srvs)
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// The central operator owns the stream: three replicas.
	waitFor(t, 30*time.Second, "an R3 stream (JetStream meta leader elected)", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"ocserv.events.>"},
			Storage: jetstream.FileStorage, Replicas: 3, Duplicates: 2 * time.Hour})
		return err == nil
	})

	s := newSite(t, urls, nil)
	p := s.start()
	p.waitNote("READY=1", 5*time.Second)

	ap := s.appendWhile(5 * time.Millisecond)
	waitFor(t, 10*time.Second, "delivery under way", func() bool { return streamCount(urls, stream) >= 100 })
	victim := -1
	waitFor(t, 5*time.Second, "the shipper's connection to show up", func() bool {
		for i, srv := range srvs {
			cz, _ := srv.Connz(&server.ConnzOptions{})
			for _, c := range cz.Conns {
				if strings.HasPrefix(c.Name, "ocserv-telemetry-shipper") {
					victim = i
					return true
				}
			}
		}
		return false
	})
	srvs[victim].Shutdown()
	t.Logf("shut down n%d, the node the shipper was connected to", victim+1)
	waitFor(t, 20*time.Second, "the shipper's reconnect to another node", func() bool {
		return strings.Contains(p.out.String(), "nats reconnected")
	})
	ap.waitMore(t, 50, "after the reconnect")
	seqs := ap.stop()

	alive := srvs[(victim+1)%3].ClientURL()
	want := uint64(len(seqs))
	waitFor(t, 30*time.Second, fmt.Sprintf("%d messages on the surviving nodes", want), func() bool {
		return streamCount(alive, stream) >= want
	})
	counts := seqCounts(readStream(t, alive, stream))
	for _, q := range seqs {
		if counts[q] != 1 {
			t.Errorf("seq %d stored %d times, want once", q, counts[q])
		}
	}
	if uint64(len(counts)) != want {
		t.Errorf("%d distinct seqs stored, want %d", len(counts), want)
	}
	p.stop()
}

// proxy is a TCP relay between the shipper and the server that can lose
// the server's replies (acks) and cut connections: a real network fault,
// in front of a real server.
type proxy struct {
	ln       net.Listener
	target   string
	dropBack atomic.Bool // discard server → client bytes
	down     atomic.Bool // refuse and cut every connection
	mu       sync.Mutex
	conns    []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close(); c.Close() }()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && !p.dropBack.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			s.Close()
			c.Close()
		}()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Events are stored but their acks are lost, then the connection stays
// down for longer than the stream's (deliberately short) duplicate window.
// The retries are stored again: nothing is lost, and the duplicates are
// exactly the ones docs/design.md allows (consumers de-duplicate on event_id).
func TestOutageLongerThanDuplicateWindow(t *testing.T) {
	srv := startServer(t, 0, t.TempDir())
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"ocserv.events.>"},
		Storage: jetstream.FileStorage, Duplicates: time.Second}); err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, srv.Addr().String())
	s := newSite(t, px.url(), map[string]string{"NATS_DUPLICATE_WINDOW": "1s"})
	p := s.start()
	p.waitNote("READY=1", 5*time.Second)
	seqs := s.appendEvents(20)
	waitFor(t, 10*time.Second, "20 stored", func() bool { return streamCount(srv.ClientURL(), stream) == 20 })

	px.dropBack.Store(true) // acks are lost from here on
	lost := s.appendEvents(10)
	seqs = append(seqs, lost...)
	waitFor(t, 10*time.Second, "30 stored, 10 of them unacknowledged", func() bool { return streamCount(srv.ClientURL(), stream) == 30 })
	px.down.Store(true)
	px.cut()
	time.Sleep(3 * time.Second) // three duplicate windows
	px.dropBack.Store(false)
	px.down.Store(false)

	waitFor(t, 20*time.Second, "the backlog delivered after the outage", func() bool {
		m := s.status()
		return m != nil && m["backlog_events"] == float64(0) && m["nats_state"] == "connected"
	})
	p.stop()
	msgs := readStream(t, srv.ClientURL(), stream)
	counts := seqCounts(msgs)
	dups := 0
	for _, q := range seqs {
		if counts[q] == 0 {
			t.Errorf("seq %d lost", q)
		}
		dups += counts[q] - 1
	}
	for _, q := range seqs[:20] {
		if counts[q] != 1 {
			t.Errorf("acknowledged seq %d stored %d times", q, counts[q])
		}
	}
	t.Logf("%d events, %d stored messages: %d duplicates from retries after the window", len(seqs), len(msgs), dups)
	if dups == 0 || dups > len(lost) {
		t.Errorf("%d duplicates; want between 1 and %d (only the unacknowledged events, retried after the window)", dups, len(lost))
	}
}
