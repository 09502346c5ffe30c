package natstest

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// permissionsBlock is a page's nats-server configuration between its
// markers: `<!-- permissions:begin -->`, a fenced block, `<!-- permissions:end -->`.
var permissionsBlock = regexp.MustCompile("(?s)<!-- permissions:begin -->\\s*```[a-z]*\\n(.*?)```\\s*<!-- permissions:end -->")

// DocumentedConf returns the permissions block of the Markdown page at
// path, so a test runs exactly what the page tells operators to write.
func DocumentedConf(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := permissionsBlock.FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no permissions block between its markers", path)
	}
	return string(m[1])
}

// RunDocumented starts nats-server with the permissions block of the page
// at path on a loopback port (only the listen address and a private
// JetStream store are added) and stops it when the test ends.
func RunDocumented(t testing.TB, path string) *server.Server {
	t.Helper()
	dir := t.TempDir()
	conf := "listen: 127.0.0.1:-1\njetstream: {store_dir: \"" + filepath.Join(dir, "js") + "\"}\n" + DocumentedConf(t, path)
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("the configuration %s documents does not load: %v", path, err)
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}
