package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// line encodes a minimal valid event for a stamp.
func line(st Stamp) ([]byte, error) {
	return []byte(fmt.Sprintf(`{"v":1,"event_id":"e-%d","server_id":"srv","spool_id":%q,"seq":%d,"type":"connect","extra":{"k":[1,2]}}`+"\n",
		st.Seq, st.SpoolID, st.Seq)), nil
}

func newSpool(t *testing.T, o Options) (*Spool, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	o.Create = true
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func mustAppend(t *testing.T, s *Spool, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := s.Append(line); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll scans every chunk and returns the valid seqs and malformed lines.
func readAll(t *testing.T, s *Spool) (seqs []uint64, bad []string) {
	t.Helper()
	chunks, err := s.Chunks()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		f, err := s.OpenChunk(c)
		if err != nil {
			t.Fatal(err)
		}
		sc := NewScanner(f, 0, !c.Active)
		for sc.Scan() {
			if l := sc.Line(); l.Err != nil {
				bad = append(bad, string(l.Data))
			} else {
				seqs = append(seqs, l.Rec.Seq)
			}
		}
		if sc.Err() != nil {
			t.Fatal(sc.Err())
		}
		f.Close()
	}
	return seqs, bad
}

func wantSeqs(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	if len(got) != int(to-from+1) {
		t.Fatalf("got %d seqs %v, want %d..%d", len(got), got, from, to)
	}
	for i, s := range got {
		if s != from+uint64(i) {
			t.Fatalf("seq[%d] = %d, want %d (all: %v)", i, s, from+uint64(i), got)
		}
	}
}

func TestAppendAndScan(t *testing.T) {
	s, dir := newSpool(t, Options{Fsync: true, LockWait: time.Second})
	mustAppend(t, s, 50)
	seqs, bad := readAll(t, s)
	wantSeqs(t, seqs, 1, 50)
	if len(bad) != 0 {
		t.Errorf("malformed lines: %q", bad)
	}
	if s.Meta().SpoolID == "" || s.Meta().Format != Format {
		t.Errorf("meta = %+v", s.Meta())
	}
	// A second Open sees the same spool and continues the numbering.
	s2, err := Open(dir, Options{LockWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Meta() != s.Meta() {
		t.Errorf("reopened meta %+v != %+v", s2.Meta(), s.Meta())
	}
	info, err := s2.Append(line)
	if err != nil || info.Seq != 51 || info.Recovered {
		t.Errorf("append after reopen = %+v, %v; want seq 51 without recovery", info, err)
	}
}

// Init gives a reader the spool_id before any event, and the first append
// keeps it.
func TestInit(t *testing.T) {
	s, dir := newSpool(t, Options{})
	if s.Meta().SpoolID != "" {
		t.Fatal("a new directory already has a spool_id")
	}
	m, err := s.Init()
	if err != nil || m.SpoolID == "" || m.Format != Format {
		t.Fatalf("Init = %+v, %v", m, err)
	}
	other, _ := Open(dir, Options{})
	defer other.Close()
	if m2, err := other.Init(); err != nil || m2 != m {
		t.Errorf("second Init = %+v, %v; want %+v", m2, err, m)
	}
	info, err := s.Append(line)
	if err != nil || info.SpoolID != m.SpoolID || info.Seq != 1 {
		t.Errorf("first append after Init = %+v, %v", info, err)
	}
}

// Many writers in one process, each with its own Spool (its own lock
// descriptor): seqs unique and gap-free.
func TestConcurrentAppends(t *testing.T) {
	_, dir := newSpool(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(dir, Options{Fsync: true, LockWait: 5 * time.Second})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			for i := 0; i < 50; i++ {
				if _, err := s.Append(line); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, _ := Open(dir, Options{})
	defer s.Close()
	seqs, _ := readAll(t, s)
	wantSeqs(t, seqs, 1, 400)
}

// Files get exactly the documented modes whatever the umask says.
func TestModesIgnoreUmask(t *testing.T) {
	for _, mask := range []int{0, 0o077, 0o027} {
		t.Run(fmt.Sprintf("umask %03o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			s, dir := newSpool(t, Options{})
			mustAppend(t, s, 1)
			if _, err := s.AppendFallback([]byte(`{"v":1}` + "\n")); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveState(State{HWM: 1}, true); err != nil {
				t.Fatal(err)
			}
			if err := s.StoreSession("1-vpns0", newUUID()); err != nil {
				t.Fatal(err)
			}
			want := map[string]os.FileMode{
				QueueFile: EventMode, LockFile: StateMode, VersionFile: EventMode, StateFile: StateMode,
				PendingDir: DirMode, FallbackDir: DirMode, QuarantineDir: DirMode, SessionsDir: DirMode,
				SessionsDir + "/1-vpns0": StateMode,
			}
			fb, _ := filepath.Glob(filepath.Join(dir, FallbackDir, "*.ndjson"))
			if len(fb) != 1 {
				t.Fatalf("fallback files: %v", fb)
			}
			want[FallbackDir+"/"+filepath.Base(fb[0])] = EventMode
			for name, mode := range want {
				fi, err := os.Lstat(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != mode {
					t.Errorf("%s: mode %04o, want %04o", name, fi.Mode().Perm(), mode)
				}
			}
		})
	}
}

func TestRefusesUnsafeDir(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	os.Mkdir(real, 0o750)
	link := filepath.Join(base, "link")
	os.Symlink(real, link)
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o750)
	os.Chmod(open, 0o777)
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	tests := []struct{ dir, want string }{
		{link, "symbolic link"},
		{open, "writable by others"},
		{file, "not a directory"},
		{filepath.Join(base, "missing", "deeper"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			s, err := Open(tt.dir, Options{Create: true})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) accepted it", tt.dir)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.dir) {
				t.Errorf("error %q does not say %q and name the dir", err, tt.want)
			}
		})
	}
	t.Run("other owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a directory to another user")
		}
		d := filepath.Join(base, "theirs")
		os.Mkdir(d, 0o750)
		os.Chown(d, 65534, 65534)
		if s, err := Open(d, Options{}); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(other's dir) = %v", err)
		}
	})
}

// Files planted as symlinks in the spool are never followed.
func TestNoSymlinkFollowing(t *testing.T) {
	s, dir := newSpool(t, Options{})
	mustAppend(t, s, 1)
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("keep\n"), 0o600)
	os.Remove(filepath.Join(dir, QueueFile))
	os.Symlink(target, filepath.Join(dir, QueueFile))
	if _, err := s.Append(line); err == nil {
		t.Error("append through a symlinked queue succeeded")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep\n" {
		t.Errorf("symlink target was written: %q", b)
	}
	os.Remove(filepath.Join(dir, QueueFile))
	if err := syscall.Mkfifo(filepath.Join(dir, QueueFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(line); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("append into a FIFO: %v", err)
	}
}

// A torn tail (a writer killed mid-line, a full disk) never glues onto the
// next event: the torn bytes become a malformed line of their own.
func TestTornLineGuard(t *testing.T) {
	s, dir := newSpool(t, Options{})
	mustAppend(t, s, 2)
	f, _ := os.OpenFile(filepath.Join(dir, QueueFile), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"v":1,"event_id":"torn","ser`)
	f.Close()
	mustAppend(t, s, 1)
	seqs, bad := readAll(t, s)
	if len(bad) != 1 || bad[0] != `{"v":1,"event_id":"torn","ser` {
		t.Fatalf("malformed = %q; want the torn bytes alone", bad)
	}
	// The torn writer took seq 3 before it died? Not here: the counter
	// was not advanced, so the next event is 3.
	wantSeqs(t, seqs, 1, 3)
}

// The counter is trusted only within one boot; after a reboot it is
// recovered from what is on disk, whichever is highest.
func TestSeqRecoveryAfterReboot(t *testing.T) {
	forgeCounter := func(t *testing.T, dir string, seq uint64) {
		rec := fmt.Sprintf("%020d %-36s\n", seq, "00000000-0000-0000-0000-000000000000")
		if err := os.WriteFile(filepath.Join(dir, LockFile), []byte(rec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("queue tail", func(t *testing.T) {
		s, dir := newSpool(t, Options{})
		mustAppend(t, s, 10)
		forgeCounter(t, dir, 4) // the unsynced counter lost its last writes
		info, err := s.Append(line)
		if err != nil || info.Seq != 11 || !info.Recovered {
			t.Fatalf("append = %+v, %v; want seq 11, recovered", info, err)
		}
		info, _ = s.Append(line)
		if info.Seq != 12 || info.Recovered {
			t.Errorf("second append = %+v; want 12 from the counter", info)
		}
	})
	t.Run("torn tail and lost counter file", func(t *testing.T) {
		s, dir := newSpool(t, Options{})
		mustAppend(t, s, 7)
		f, _ := os.OpenFile(filepath.Join(dir, QueueFile), os.O_WRONLY|os.O_APPEND, 0)
		f.WriteString(`{"v":1,"seq":99`)
		f.Close()
		os.Remove(filepath.Join(dir, LockFile))
		info, err := s.Append(line)
		if err != nil || info.Seq != 8 {
			t.Fatalf("append = %+v, %v; want 8", info, err)
		}
	})
	t.Run("chunk names and high-water mark", func(t *testing.T) {
		s, dir := newSpool(t, Options{})
		mustAppend(t, s, 5)
		if _, ok, err := s.Rotate(); !ok || err != nil {
			t.Fatal(ok, err)
		}
		forgeCounter(t, dir, 1)
		info, _ := s.Append(line)
		if info.Seq != 6 {
			t.Errorf("after rotate: seq %d, want 6 (from the chunk name)", info.Seq)
		}
		chunks, _ := s.Chunks()
		for _, c := range chunks {
			if !c.Active {
				s.Remove(c)
			}
		}
		if err := s.SaveState(State{HWM: 40}, true); err != nil {
			t.Fatal(err)
		}
		forgeCounter(t, dir, 2)
		info, _ = s.Append(line)
		if info.Seq != 41 {
			t.Errorf("after deleting chunks: seq %d, want 41 (from the high-water mark)", info.Seq)
		}
	})
}

func TestLockTimeoutAndFallback(t *testing.T) {
	s, dir := newSpool(t, Options{LockWait: 80 * time.Millisecond})
	mustAppend(t, s, 3)
	// Another process's view: hold the lock through our own descriptor.
	lf, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Append(line)
	waited := time.Since(start)
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Append under a held lock = %v, want ErrLockTimeout", err)
	}
	// The budget, then at most a timer's lateness on a busy machine.
	if waited < 80*time.Millisecond || waited > 80*time.Millisecond+250*time.Millisecond {
		t.Errorf("waited %s for an 80ms lock budget (at most 250ms late)", waited)
	}
	name, err := s.AppendFallback([]byte(`{"v":1,"event_id":"fb-1","server_id":"srv","type":"connect","future":{"x":1}}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	lf.Close() // releases the lock

	// The abandoned waiter must not keep the lock: the next append works.
	if _, err := s.Append(line); err != nil {
		t.Fatalf("append after the holder left: %v", err)
	}
	names, _ := s.Fallbacks()
	if len(names) != 1 || names[0] != name {
		t.Fatalf("Fallbacks() = %v, want [%s]", names, name)
	}
	seq, err := s.IngestFallback(name)
	if err != nil || seq != 5 {
		t.Fatalf("IngestFallback = %d, %v; want seq 5", seq, err)
	}
	if names, _ := s.Fallbacks(); len(names) != 0 {
		t.Errorf("fallback file left: %v", names)
	}
	b, _ := os.ReadFile(filepath.Join(dir, QueueFile))
	last := lastLine(b)
	for _, want := range []string{`"seq":5`, `"event_id":"fb-1"`, `"future":{"x":1}`, `"spool_id":"` + s.Meta().SpoolID + `"`} {
		if !strings.Contains(last, want) {
			t.Errorf("ingested line %s lacks %s", last, want)
		}
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return lines[len(lines)-1]
}

// A shipper killed while taking in a fallback file leaves *.taken; the
// event must end up in the queue exactly once either way.
func TestIngestFallbackCrashLeftovers(t *testing.T) {
	ev := []byte(`{"v":1,"event_id":"fb-2","server_id":"srv","type":"disconnect"}` + "\n")
	t.Run("killed before the append", func(t *testing.T) {
		s, dir := newSpool(t, Options{})
		mustAppend(t, s, 1)
		name, _ := s.AppendFallback(ev)
		os.Rename(filepath.Join(dir, name), filepath.Join(dir, name+takenSuffix))
		names, _ := s.Fallbacks()
		if len(names) != 1 {
			t.Fatalf("Fallbacks = %v", names)
		}
		if seq, err := s.IngestFallback(names[0]); err != nil || seq != 2 {
			t.Fatalf("IngestFallback = %d, %v", seq, err)
		}
		if n := strings.Count(readFile(t, dir, QueueFile), `"fb-2"`); n != 1 {
			t.Errorf("event appears %d times", n)
		}
	})
	t.Run("killed after the append", func(t *testing.T) {
		s, dir := newSpool(t, Options{})
		name, _ := s.AppendFallback(ev)
		if _, err := s.IngestFallback(name); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, 2)
		// Put the file back as the crash would have left it.
		os.WriteFile(filepath.Join(dir, name+takenSuffix), ev, 0o640)
		seq, err := s.IngestFallback(name + takenSuffix)
		if err != nil || seq != 1 {
			t.Fatalf("IngestFallback = %d, %v; want the seq it already had (1)", seq, err)
		}
		if n := strings.Count(readFile(t, dir, QueueFile), `"fb-2"`); n != 1 {
			t.Errorf("event appears %d times", n)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		s, dir := newSpool(t, Options{})
		name, _ := s.AppendFallback([]byte("not json\n"))
		if _, err := s.IngestFallback(name); !errors.Is(err, ErrMalformedFallback) {
			t.Fatalf("IngestFallback(garbage) = %v", err)
		}
		q, _ := filepath.Glob(filepath.Join(dir, QuarantineDir, "*.bad"))
		if len(q) != 1 || !strings.Contains(readFile(t, dir, QuarantineDir+"/"+filepath.Base(q[0])), "not json") {
			t.Errorf("garbage not quarantined: %v", q)
		}
	})
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSessionStore(t *testing.T) {
	s, dir := newSpool(t, Options{})
	a, b := newUUID(), newUUID()
	if err := s.StoreSession("12-vpns0", a); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreSession("12-vpns0", b); err != nil { // a reused worker id
		t.Fatal(err)
	}
	if got, ok, err := s.LoadSession("12-vpns0"); got != b || !ok || err != nil {
		t.Errorf("LoadSession = %q, %v, %v; want %q", got, ok, err, b)
	}
	os.WriteFile(filepath.Join(dir, SessionsDir, "13-vpns1"), []byte("01a2-torn"), 0o600)
	if _, ok, err := s.LoadSession("13-vpns1"); ok || err == nil {
		t.Errorf("a torn session file was accepted")
	}
	for _, bad := range []string{"", "..", "a/b", "x\x00"} {
		if err := s.StoreSession(bad, a); err == nil {
			t.Errorf("StoreSession(%q) accepted the key", bad)
		}
	}
	if err := s.StoreSession("14-vpns2", "short"); err == nil {
		t.Error("a non-UUID session_uid was stored")
	}
	if err := s.DropSession("12-vpns0"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.LoadSession("12-vpns0"); ok {
		t.Error("dropped session still there")
	}
}

func TestRotateProgressAndRemove(t *testing.T) {
	s, _ := newSpool(t, Options{})
	if _, ok, err := s.Rotate(); ok || err != nil {
		t.Fatalf("rotating an empty spool: %v, %v", ok, err)
	}
	mustAppend(t, s, 4)
	chunks, _ := s.Chunks()
	if len(chunks) != 1 || !chunks[0].Active {
		t.Fatalf("chunks = %+v", chunks)
	}
	var st State
	st.SetProgress(chunks[0], 2*chunks[0].Size/4)
	if err := s.SaveState(st, false); err != nil {
		t.Fatal(err)
	}
	c, ok, err := s.Rotate()
	if !ok || err != nil || c.Name != "pending/00000000000000000004.ndjson" {
		t.Fatalf("Rotate = %+v, %v, %v", c, ok, err)
	}
	mustAppend(t, s, 1)
	st, err = s.LoadState()
	if err != nil {
		t.Fatal(err)
	}
	chunks, _ = s.Chunks()
	if len(chunks) != 2 || chunks[0].Name != c.Name || !chunks[1].Active {
		t.Fatalf("chunks after rotate = %+v", chunks)
	}
	if got := st.Progress(chunks[0]); got != c.Size/2 {
		t.Errorf("progress followed the rename: got %d, want %d", got, c.Size/2)
	}
	if got := st.Progress(chunks[1]); got != 0 {
		t.Errorf("new queue inherits progress %d", got)
	}
	// A progress entry for a pending chunk must not apply to the queue
	// even if the inode is reused.
	st2 := State{}
	st2.SetProgress(Chunk{Name: c.Name, Ino: chunks[1].Ino, Size: 99}, 10)
	if st2.Progress(chunks[1]) != 0 {
		t.Error("a chunk's entry applied to the queue by inode alone")
	}
	if err := s.Remove(chunks[1]); err == nil {
		t.Error("Remove(active queue) succeeded")
	}
	if err := s.Remove(chunks[0]); err != nil {
		t.Fatal(err)
	}
	seqs, _ := readAll(t, s)
	wantSeqs(t, seqs, 5, 5)
}

func TestScannerActiveAndFinal(t *testing.T) {
	valid := `{"v":1,"event_id":"a","server_id":"s","seq":1,"type":"connect"}`
	data := valid + "\n" + `{"v":1,"event_id":"b"`
	sc := NewScanner(strings.NewReader(data), 100, false)
	var n int
	for sc.Scan() {
		n++
		if l := sc.Line(); l.Err != nil || l.Off != 100 || l.Next != 100+int64(len(valid))+1 {
			t.Errorf("line %+v", l)
		}
	}
	if n != 1 || sc.Offset() != 100+int64(len(valid))+1 {
		t.Errorf("active: %d lines, offset %d; the unterminated tail must wait", n, sc.Offset())
	}
	sc = NewScanner(strings.NewReader(data), 0, true)
	var errs []error
	for sc.Scan() {
		errs = append(errs, sc.Line().Err)
	}
	if len(errs) != 2 || errs[0] != nil || errs[1] == nil || !strings.Contains(errs[1].Error(), "torn") {
		t.Errorf("final: %v", errs)
	}
}

func TestScannerMalformedLines(t *testing.T) {
	long := `{"v":1,"pad":"` + strings.Repeat("x", MaxLine) + `"}`
	lines := []string{
		`{"v":1,"event_id":"a","server_id":"s","seq":1,"type":"connect"}`,
		``,
		`not json`,
		`{"v":1,"event_id":"b","server_id":"s","seq":2}`,
		`{"v":1,"event_id":"c","server_id":"s.x","seq":3,"type":"connect"}`,
		`{"v":1,"event_id":"d","server_id":"s","type":"connect"}`,
		"\x00\x01\xff binary",
		long,
		`{"v":1,"event_id":"e","server_id":"s","seq":5,"type":"disconnect"}`,
	}
	data := strings.Join(lines, "\n") + "\n"
	sc := NewScanner(strings.NewReader(data), 0, true)
	var ok, bad int
	var end int64
	for sc.Scan() {
		l := sc.Line()
		if l.Err == nil {
			ok++
		} else {
			bad++
		}
		end = l.Next
	}
	if ok != 2 || bad != 7 || end != int64(len(data)) {
		t.Errorf("ok %d bad %d end %d/%d", ok, bad, end, len(data))
	}
}

func FuzzScanner(f *testing.F) {
	f.Add([]byte(`{"v":1,"event_id":"a","server_id":"s","seq":1,"type":"connect"}`+"\n"+`{"v":1`), true)
	f.Add([]byte("\n\n\xff{}\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, final bool) {
		sc := NewScanner(bytes.NewReader(data), 7, final)
		off := int64(7)
		for sc.Scan() {
			l := sc.Line()
			if l.Off != off || l.Next <= l.Off {
				t.Fatalf("offsets %d..%d, want start %d", l.Off, l.Next, off)
			}
			if l.Err == nil && (l.Rec.Seq == 0 || l.Rec.EventID == "" || bytes.IndexByte(l.Data, '\n') >= 0) {
				t.Fatalf("accepted %q as %+v", l.Data, l.Rec)
			}
			off = l.Next
		}
		if final && off != 7+int64(len(data)) {
			t.Fatalf("final scan stopped at %d of %d", off-7, len(data))
		}
		if !final && off > 7+int64(len(data)) {
			t.Fatalf("scanned past the end")
		}
	})
}
