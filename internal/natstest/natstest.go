// Package natstest starts a real, embedded nats-server with JetStream for
// tests and the demo: a random loopback port and a private store directory.
package natstest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options adjusts the server; the zero value is a JetStream server on a
// random loopback port.
type Options struct {
	Port     int    // 0: random
	StoreDir string // "": a new temporary directory
	Name     string
}

// Start runs a server until Shutdown. The caller removes StoreDir when it
// made one (Run does that for tests).
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		d, err := os.MkdirTemp("", "natstest-")
		if err != nil {
			return nil, fmt.Errorf("make store dir: %w", err)
		}
		o.StoreDir = d
	}
	port := o.Port
	if port == 0 {
		port = -1 // nats-server: random port
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats-server not ready within 10s")
	}
	return s, nil
}

// Run starts a server for one test and stops it, and removes its store,
// when the test ends.
func Run(t testing.TB) *server.Server {
	t.Helper()
	dir := t.TempDir()
	s, err := Start(Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}
