package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// Format is the spool format this package reads and writes.
const Format = 1

// File names inside the spool directory.
const (
	VersionFile   = "VERSION"
	LockFile      = "lock"
	QueueFile     = "queue.ndjson"
	PendingDir    = "pending"
	FallbackDir   = "fallback"
	QuarantineDir = "quarantine"
	SessionsDir   = "sessions"
	StateFile     = "shipper.state"
	StatusFile    = "status.json"
)

// Modes of what the spool creates. Events are readable by the owner and
// group (an operator's log group may tail them), never by others.
const (
	DirMode   = 0o750
	EventMode = 0o640
	StateMode = 0o600
)

// MaxLine is the longest line the reader accepts. The hook caps its values
// far below this; a longer line is malformed.
const MaxLine = 1 << 20

// ErrLockTimeout means the lock was not free within Options.LockWait.
var ErrLockTimeout = errors.New("spool lock not free in time")

// Options controls how a Spool writes.
type Options struct {
	// Fsync makes Append and AppendFallback durable before they return.
	Fsync bool
	// LockWait bounds the wait for the lock; 0 means try once.
	LockWait time.Duration
	// Create makes the directory (one level) when it is missing.
	Create bool
}

// Spool is an open spool directory. It holds a descriptor of the directory,
// so a rename of the path after Open does not redirect writes.
type Spool struct {
	dir   string
	dirfd int
	opts  Options
	meta  Meta
}

// Meta is the content of the VERSION file.
type Meta struct {
	Format  int
	SpoolID string
}

// Open opens (and with Options.Create, makes) the spool directory and
// checks that it is safe to write: a real directory, not a symlink, owned
// by this user or root, not writable by others. It does not initialise an
// empty directory; the first Append does, under the lock.
func Open(dir string, opts Options) (*Spool, error) {
	const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open(dir, dirFlags, 0)
	if err == unix.ENOENT && opts.Create {
		if err := unix.Mkdir(dir, DirMode); err != nil && err != unix.EEXIST {
			return nil, fmt.Errorf("create spool dir %s: %w", dir, err)
		}
		unix.Chmod(dir, DirMode) // Mkdir honours the umask
		fd, err = unix.Open(dir, dirFlags, 0)
	}
	if err != nil {
		var lst unix.Stat_t
		if unix.Lstat(dir, &lst) == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.ELOOP // O_DIRECTORY|O_NOFOLLOW says ENOTDIR for a symlink
		}
		switch err {
		case unix.ELOOP:
			return nil, fmt.Errorf("open spool dir %s: it is a symbolic link; refusing to follow it", dir)
		case unix.ENOTDIR:
			return nil, fmt.Errorf("open spool dir %s: not a directory", dir)
		}
		return nil, fmt.Errorf("open spool dir %s: %w", dir, err)
	}
	s := &Spool{dir: dir, dirfd: fd, opts: opts}
	if err := s.checkDir(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := s.readMeta(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

func (s *Spool) checkDir() error {
	var st unix.Stat_t
	if err := unix.Fstat(s.dirfd, &st); err != nil {
		return fmt.Errorf("stat spool dir %s: %w", s.dir, err)
	}
	if st.Mode&0o002 != 0 {
		return fmt.Errorf("spool dir %s is writable by others (mode %04o); refusing it", s.dir, st.Mode&0o7777)
	}
	if euid := uint32(os.Geteuid()); st.Uid != euid && st.Uid != 0 {
		return fmt.Errorf("spool dir %s belongs to uid %d, not to uid %d or root; refusing it", s.dir, st.Uid, euid)
	}
	return nil
}

// Close releases the directory descriptor.
func (s *Spool) Close() error { return unix.Close(s.dirfd) }

// Dir is the spool's path.
func (s *Spool) Dir() string { return s.dir }

// Meta returns the spool's format and id; SpoolID is empty until the spool
// has been initialised by its first append.
func (s *Spool) Meta() Meta { return s.meta }

func (s *Spool) readMeta() error {
	b, err := readFileAt(s.dirfd, VersionFile, 4096)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s/%s: %w", s.dir, VersionFile, err)
	}
	m, err := parseMeta(b)
	if err != nil {
		return fmt.Errorf("read %s/%s: %w", s.dir, VersionFile, err)
	}
	s.meta = m
	return nil
}

func parseMeta(b []byte) (Meta, error) {
	var m Meta
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "format":
			n, err := strconv.Atoi(v)
			if err != nil {
				return m, fmt.Errorf("bad format line %q", v)
			}
			m.Format = n
		case "spool_id":
			m.SpoolID = v
		}
	}
	if m.Format == 0 || m.SpoolID == "" {
		return m, fmt.Errorf("not a spool version file (want format= and spool_id= lines)")
	}
	if m.Format > Format {
		return m, fmt.Errorf("spool format %d is newer than this program understands (%d)", m.Format, Format)
	}
	return m, nil
}

// Init makes the directory a spool (subdirectories, VERSION with a new
// spool_id) if it is not one yet, under the lock, and returns its Meta. The
// first Append does the same; Init is for a reader that needs the spool_id
// before any event was written (the shipper's live state, say).
func (s *Spool) Init() (Meta, error) {
	if s.meta.SpoolID != "" {
		return s.meta, nil
	}
	l, _, err := s.lock()
	if err != nil {
		return Meta{}, fmt.Errorf("init spool %s: %w", s.dir, err)
	}
	defer l.unlock()
	if err := s.initLocked(); err != nil {
		return Meta{}, err
	}
	return s.meta, nil
}

// initLocked makes an empty directory a spool: subdirectories and the
// VERSION file with a new spool_id. The caller holds the lock.
func (s *Spool) initLocked() error {
	for _, d := range []string{PendingDir, FallbackDir, QuarantineDir, SessionsDir} {
		if err := mkdirAt(s.dirfd, d); err != nil {
			return fmt.Errorf("init spool %s: %w", s.dir, err)
		}
	}
	if err := s.readMeta(); err != nil || s.meta.SpoolID != "" {
		return err // another writer initialised it while we waited
	}
	m := Meta{Format: Format, SpoolID: newUUID()}
	body := fmt.Sprintf("# ocserv-telemetry spool; do not edit\nformat=%d\nspool_id=%s\ncreated=%s\n",
		m.Format, m.SpoolID, time.Now().UTC().Format(time.RFC3339))
	if err := writeFileAtomic(s.dirfd, VersionFile, []byte(body), EventMode, true); err != nil {
		return fmt.Errorf("init spool %s: write %s: %w", s.dir, VersionFile, err)
	}
	s.meta = m
	return nil
}

// newUUID returns a random (version 4) UUID. The spool avoids a UUID
// library and crypto/rand here so the hook's binary stays small (see
// events.Random).
func newUUID() string {
	var b [16]byte
	events.Random(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
