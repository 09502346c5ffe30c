// Package pgtest runs a throwaway PostgreSQL cluster for tests and
// benchmarks: initdb and pg_ctl from Debian's postgresql package in a
// temporary directory, listening on a unix socket only (no TCP port to
// collide on), as the postgres user when running as root (initdb refuses
// root) or as the current user otherwise. Each test gets its own database,
// dropped when it ends. The cluster is stopped when the test binary's
// TestMain returns (Main), also after failures; a cluster left behind by a
// killed run is found and stopped by the next run's sweep.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir holds initdb and pg_ctl (Debian 12's PostgreSQL 15); the
// environment variable PGTEST_BINDIR names another.
var BinDir = "/usr/lib/postgresql/15/bin"

// dirPrefix names the clusters' directories, so the sweep finds them.
const dirPrefix = "ledger-pgtest-"

// Cluster is one running server.
type Cluster struct {
	Dir    string // data and socket live below it
	Socket string // the socket directory
	owner  *user.User
	opts   string // the server settings, for Restart
}

// Options of a cluster.
type Options struct {
	// Durable keeps fsync and synchronous commit on (benchmarks);
	// tests turn them off for speed.
	Durable bool
	// Settings are extra "name=value" server settings.
	Settings []string
}

// Available reports why a cluster cannot start here ("" if it can).
func Available() string {
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		BinDir = d
	}
	for _, b := range []string{"initdb", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(BinDir, b)); err != nil {
			return fmt.Sprintf("%s/%s not found (apt-get install postgresql, or set PGTEST_BINDIR)", BinDir, b)
		}
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return "running as root and there is no postgres user to run the server as"
		}
	}
	return ""
}

// Start initialises and starts a cluster in a new temporary directory.
func Start(o Options) (*Cluster, error) {
	if why := Available(); why != "" {
		return nil, errors.New(why)
	}
	Sweep()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	return start(dir, o)
}

// StartAt starts a cluster kept in dir across runs (benchmark data that
// is slow to generate): initialised when dir is new, started on its data
// otherwise. Stop it with StopKeep to keep the data.
func StartAt(dir string, o Options) (*Cluster, error) {
	if why := Available(); why != "" {
		return nil, errors.New(why)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		return start(dir, o)
	}
	c := &Cluster{Dir: dir, Socket: filepath.Join(dir, "sock")}
	if os.Geteuid() == 0 {
		c.owner, _ = user.Lookup("postgres")
	}
	c.opts = settingsOpts(c.Socket, o)
	// A previous run killed before StopKeep leaves a server behind.
	c.run("pg_ctl", "-D", filepath.Join(dir, "data"), "-m", "fast", "-w", "-t", "60", "stop")
	if err := c.Restart(); err != nil {
		return nil, err
	}
	return c, nil
}

// StopKeep stops the server and keeps its directory (StartAt).
func (c *Cluster) StopKeep() error {
	_, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "fast", "-w", "-t", "120", "stop")
	return err
}

func settingsOpts(sock string, o Options) string {
	settings := []string{"listen_addresses=", "unix_socket_directories=" + sock, "max_connections=200",
		"shared_buffers=256MB", "logging_collector=off"}
	if !o.Durable {
		settings = append(settings, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	}
	settings = append(settings, o.Settings...)
	var opts []string
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		opts = append(opts, "-c", k+"='"+v+"'")
	}
	return strings.Join(opts, " ")
}

func start(dir string, o Options) (*Cluster, error) {
	c := &Cluster{Dir: dir, Socket: filepath.Join(dir, "sock")}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		c.owner, _ = user.Lookup("postgres")
	}
	for _, d := range []string{filepath.Join(dir, "data"), c.Socket} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
		if err := c.chown(d); err != nil {
			return nil, err
		}
	}
	if err := c.chown(dir); err != nil {
		return nil, err
	}
	if out, err := c.run("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		c.remove()
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	c.opts = settingsOpts(c.Socket, o)
	if out, err := c.run("pg_ctl", "-D", filepath.Join(dir, "data"), "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60",
		"-o", c.opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		c.remove()
		return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	return c, nil
}

func (c *Cluster) chown(path string) error {
	if c.owner == nil {
		return nil
	}
	uid, _ := strconv.Atoi(c.owner.Uid)
	gid, _ := strconv.Atoi(c.owner.Gid)
	return os.Chown(path, uid, gid)
}

func (c *Cluster) run(bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(BinDir, bin), args...)
	cmd.Dir = c.Dir
	if c.owner != nil {
		uid, _ := strconv.Atoi(c.owner.Uid)
		gid, _ := strconv.Atoi(c.owner.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Env = append(os.Environ(), "HOME="+c.Dir)
	}
	// The server must not die with the test's process group on ^C
	// before Stop runs, nor hold the test's stdout open.
	return cmd.CombinedOutput()
}

// DSN is the URL of database db on this cluster.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&sslmode=disable", db, c.Socket)
}

// Exec runs one statement on the postgres database.
func (c *Cluster) Exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

var dbN atomic.Int64

// NewDatabase makes an empty database and returns its DSN.
func (c *Cluster) NewDatabase(ctx context.Context) (string, string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbN.Add(1))
	if err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, c.DSN(name), nil
}

// DropDatabase drops a database, ending its sessions.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	return c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// Stop stops the server (fast shutdown) and removes its directory.
func (c *Cluster) Stop() error {
	_, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "fast", "-w", "-t", "60", "stop")
	c.remove()
	return err
}

// Kill stops the server at once (immediate shutdown), as a crash would.
func (c *Cluster) Kill() error {
	_, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop")
	return err
}

// Restart starts a stopped (killed) server again on the same data.
func (c *Cluster) Restart() error {
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60",
		"-o", c.opts, "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

func (c *Cluster) remove() { os.RemoveAll(c.Dir) }

// Sweep stops and removes clusters whose test process is gone (a run that
// was killed before it could stop its own).
func Sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // a live run's cluster
		}
		c := &Cluster{Dir: d, Socket: filepath.Join(d, "sock")}
		if os.Geteuid() == 0 {
			c.owner, _ = user.Lookup("postgres")
		}
		if _, err := os.Stat(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			c.run("pg_ctl", "-D", filepath.Join(d, "data"), "-m", "immediate", "-w", "-t", "30", "stop")
		}
		c.remove()
	}
}

var (
	shared     *Cluster
	sharedErr  error
	sharedOnce sync.Once
	used       atomic.Bool
)

// Main runs a package's tests and stops the shared cluster afterwards,
// whatever they did: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if used.Load() && shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// Shared is the package's cluster, started at first use. Without a
// PostgreSQL installation the test fails, except when PGTEST_SKIP=1 says
// skipping is wanted (never in CI).
func Shared(t testing.TB) *Cluster {
	t.Helper()
	sharedOnce.Do(func() {
		used.Store(true)
		shared, sharedErr = Start(Options{})
	})
	if sharedErr != nil {
		if os.Getenv("PGTEST_SKIP") == "1" {
			t.Skipf("PostgreSQL not available (PGTEST_SKIP=1): %v", sharedErr)
		}
		t.Fatalf("start a throwaway PostgreSQL: %v", sharedErr)
	}
	return shared
}

// Database makes a database on the shared cluster for one test and drops
// it when the test ends.
func Database(t testing.TB) string {
	t.Helper()
	c := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, dsn, err := c.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.DropDatabase(ctx, name)
	})
	return dsn
}
