package shipper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Options configures a Shipper. Zero durations take the defaults noted.
type Options struct {
	Spool     *spool.Spool
	Publisher Publisher
	Log       *slog.Logger

	ServerID string // for the notices the shipper writes
	Prefix   string // subject prefix ("ocserv")

	MaxInFlight int   // unacknowledged publishes at once (default 1024)
	RotateBytes int64 // rotate the active file at this size (default 4 MiB)
	MaxBytes    int64 // spool cap; 0: no cap
	// Durable makes every line durable on disk before it is published
	// (SPOOL_FSYNC): see startReader.
	Durable bool

	Poll           time.Duration // fallback rescan when no notification comes (1s)
	IdleRotate     time.Duration // rotate a fully acknowledged active file idle this long (2s)
	SaveEvery      time.Duration // flush progress at most this often (200ms)
	StatusInterval time.Duration // rewrite the status file (5s)
	DrainTimeout   time.Duration // wait for in-flight acks at shutdown (5s)
	StaleTemp      time.Duration // age of fallback temporaries to delete (10m)

	// Backoff between retries after a failure (100ms doubling to 5s, ±50%).
	BackoffInitial time.Duration
	BackoffMax     time.Duration

	// Wake is poked when the spool changes (see Watch); Reconnected when the
	// connection comes back, cutting a retry's backoff short. Either may be nil.
	Wake        <-chan struct{}
	Reconnected <-chan struct{}
	// Abort ends a draining shutdown at once (the second signal).
	Abort <-chan struct{}
	// Ready, when not nil, holds publishing back until it is closed: the
	// first stream check has run. Publishing before the stream exists is
	// not harmless: with any core subscriber on the subject the server
	// does not answer "no responders", and each publish waits out its
	// whole ack timeout.
	Ready <-chan struct{}

	// Alive is called from the loop itself at least every Poll: a watchdog
	// ping from here proves the loop turns, whatever NATS does.
	Alive func()
	// OnStatus receives each status as it is written (for systemd STATUS=).
	OnStatus func(Status)
	// LiveState, when set, adds the live state's report (occtl, claim,
	// snapshots) to each status under "live_state". It is called from the
	// shipper's loop and must be safe for that.
	LiveState func() any
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.RotateBytes <= 0 {
		o.RotateBytes = 4 << 20
	}
	if o.Prefix == "" {
		o.Prefix = "ocserv"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	def(&o.Poll, time.Second)
	def(&o.IdleRotate, 2*time.Second)
	def(&o.SaveEvery, 200*time.Millisecond)
	def(&o.StatusInterval, 5*time.Second)
	def(&o.DrainTimeout, 5*time.Second)
	def(&o.StaleTemp, 10*time.Minute)
	def(&o.BackoffInitial, 100*time.Millisecond)
	def(&o.BackoffMax, 5*time.Second)
}

// Shipper drains one spool. Make it with New, run it with Run.
type Shipper struct {
	o   Options
	sp  *spool.Spool
	pub Publisher
	log *slog.Logger

	st      spool.State
	chunks  []*tracker // oldest first; the active file, if known, last
	byIno   map[uint64]*tracker
	dirty   bool // progress changed since the last save
	lastSav time.Time

	ring   []entry // in-flight window, indexed by id % len(ring)
	head   uint64  // id of the oldest entry
	tail   uint64  // id of the next entry
	acks   chan ack
	unres  int // entries whose outcome is not known yet
	failed bool

	retrying   bool // after a failure: waiting for the window to settle, then backoff
	settled    bool // the window is empty and the backoff timer runs
	bo         *backoff.ExponentialBackOff
	retryTimer *time.Timer
	failures   int
	failSince  time.Time
	lastFailLg time.Time

	fallbackDue bool
	stopping    bool

	stats stats
}

type tracker struct {
	c      spool.Chunk
	final  bool   // in pending/: immutable, a torn tail is malformed
	acked  int64  // contiguous acknowledged prefix
	read   int64  // next offset to read
	maxSeq uint64 // highest seq read from it
	lines  int64  // final chunks: lines in [acked, size); -1 until counted
	infl   int    // entries in the window that point here
	f      *os.File
	rd     *lineReader // read-ahead from t.read, nil when not reading
	cur    *batch      // the batch being published
	ci     int         // next line of cur
	grew   time.Time   // last time the active file was seen growing
	atEOF  bool        // the last read of the active file reached its end
	gone   bool
}

// entry is one slot of the in-flight window: a published line, or a run of
// quarantined lines that is done as soon as it is pushed.
type entry struct {
	id   uint64
	t    *tracker
	next int64
	st   int8 // 0 waiting, 1 acknowledged, 2 failed
}

type ack struct {
	id  uint64
	err error
}

// New checks the options and loads the saved progress.
func New(o Options) (*Shipper, error) {
	o.defaults()
	if o.Spool == nil || o.Publisher == nil {
		return nil, errors.New("shipper: Spool and Publisher are required")
	}
	s := &Shipper{
		o: o, sp: o.Spool, pub: o.Publisher, log: o.Log,
		byIno: map[uint64]*tracker{},
		// One slot more than may be in flight: a run of quarantined lines
		// takes a slot without being a publish.
		ring: make([]entry, o.MaxInFlight+1),
		acks: make(chan ack, o.MaxInFlight),
	}
	st, err := s.sp.LoadState()
	if err != nil {
		s.log.Warn("progress unreadable; every pending event is sent again (duplicates are dropped by event_id)", "err", err.Error())
	}
	s.st = st
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = o.BackoffInitial
	b.MaxInterval = o.BackoffMax
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.MaxElapsedTime = 0 // never give up
	b.Reset()
	s.bo = b
	s.fallbackDue = true
	s.stats.started = time.Now()
	return s, nil
}

// Run drains the spool until ctx ends, then waits for in-flight
// acknowledgements for at most DrainTimeout (or until Abort), saves the
// progress durably and returns. A cancelled context is not an error.
func (s *Shipper) Run(ctx context.Context) error {
	poll := time.NewTicker(min(s.o.Poll, s.o.StatusInterval))
	defer poll.Stop()
	s.retryTimer = time.NewTimer(time.Hour)
	s.retryTimer.Stop()
	defer s.closeFiles()
	lastStatus := time.Time{}
	s.refresh()
	for {
		s.step()
		if time.Since(lastStatus) >= s.o.StatusInterval {
			s.writeStatus()
			lastStatus = time.Now()
		}
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-s.o.Wake:
			s.fallbackDue = true
			if s.active() == nil {
				s.refresh()
			}
		case a := <-s.acks:
			s.onAck(a)
			s.drainAcks()
		case <-poll.C:
			s.alive()
			s.refresh()
			s.fallbackDue = true
		case <-s.o.Reconnected:
			if s.settled {
				s.retryTimer.Stop()
				s.resume()
			}
		case <-s.retryTimer.C:
			s.resume()
		case <-s.o.Ready:
			// the first stream check has run: step publishes
		}
	}
}

func (s *Shipper) alive() {
	if s.o.Alive != nil {
		s.o.Alive()
	}
}

// step does whatever the current state allows: take in fallback files,
// fill the window, delete finished chunks, rotate, cap, save progress.
func (s *Shipper) step() {
	if s.fallbackDue && !s.stopping {
		s.fallbackDue = false
		s.ingestFallbacks()
	}
	if !s.retrying && !s.stopping && s.ready() && s.pub.Connected() {
		s.fill()
	}
	s.finishChunks()
	if !s.stopping {
		s.maybeRotate()
		s.enforceCap()
	}
	if s.dirty && time.Since(s.lastSav) >= s.o.SaveEvery {
		s.save(false)
	}
}

func (s *Shipper) ready() bool {
	if s.o.Ready == nil {
		return true
	}
	select {
	case <-s.o.Ready:
		s.o.Ready = nil
		return true
	default:
		return false
	}
}

func (s *Shipper) active() *tracker {
	if n := len(s.chunks); n > 0 && !s.chunks[n-1].final {
		return s.chunks[n-1]
	}
	return nil
}

// refresh lists the spool's chunks and tracks new ones. It is called at
// start, on every poll and when an append finds no active file tracked;
// appends to a tracked active file need no listing.
func (s *Shipper) refresh() {
	cs, err := s.sp.Chunks()
	if err != nil {
		s.noteErr("list spool", err)
		return
	}
	seen := make(map[uint64]bool, len(cs))
	for _, c := range cs {
		seen[c.Ino] = true
		t := s.byIno[c.Ino]
		if t == nil {
			acked := s.st.Progress(c)
			t = &tracker{c: c, final: !c.Active, acked: acked, read: acked, lines: -1, grew: time.Now()}
			s.byIno[c.Ino] = t
			s.chunks = append(s.chunks, t)
			continue
		}
		if !c.Active && !t.final {
			// Rotated by someone else (an older shipper, a person): from
			// now on it is immutable and a torn tail is malformed.
			t.final = true
			s.resetReader(t)
		}
		if t.c.Size != c.Size && !t.final {
			t.grew = time.Now()
		}
		t.c.Name, t.c.Size, t.c.Active = c.Name, c.Size, c.Active
	}
	kept := s.chunks[:0]
	for _, t := range s.chunks {
		if !seen[t.c.Ino] {
			// Deleted under us (by a person): nothing left to send.
			t.gone = true
			s.closeTracker(t)
			delete(s.byIno, t.c.Ino)
			s.st.Forget(t.c)
			s.dirty = true
			continue
		}
		kept = append(kept, t)
	}
	s.chunks = kept
	sortTrackers(s.chunks)
}

// sortTrackers keeps rotation order; the active file goes last. New
// trackers are appended, so this only moves a chunk found late (rare).
func sortTrackers(ts []*tracker) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && less(ts[j], ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

func less(a, b *tracker) bool {
	if a.final != b.final {
		return a.final
	}
	return chunkSeq(a.c.Name) < chunkSeq(b.c.Name) || chunkSeq(a.c.Name) == chunkSeq(b.c.Name) && a.c.Name < b.c.Name
}

// chunkSeq is the counter a chunk was rotated at, which bounds its seqs.
func chunkSeq(name string) uint64 {
	base := strings.TrimSuffix(strings.TrimPrefix(name, spool.PendingDir+"/"), ".ndjson")
	digits, _, _ := strings.Cut(base, "-")
	n, _ := strconv.ParseUint(digits, 10, 64)
	return n
}

func (s *Shipper) closeTracker(t *tracker) {
	s.resetReader(t)
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

func (s *Shipper) closeFiles() {
	for _, t := range s.chunks {
		s.closeTracker(t)
	}
}

// inWindow is the number of entries not yet popped.
func (s *Shipper) inWindow() int { return int(s.tail - s.head) }

// fill reads lines from the oldest chunk with unread data and publishes
// them until the window is full or nothing is left to read.
func (s *Shipper) fill() {
	for _, t := range s.chunks {
		if s.retrying || s.inWindow() >= len(s.ring) {
			return
		}
		if t.final && t.read >= t.c.Size {
			continue
		}
		if !s.readFrom(t) {
			return // stopped inside t (window full, failure, active tail)
		}
	}
}

// readFrom publishes t's lines from t.read. It returns true when t is read
// to its end and the next chunk may be read.
func (s *Shipper) readFrom(t *tracker) bool {
	if t.f == nil {
		f, err := s.sp.OpenChunk(t.c)
		if err != nil {
			s.noteErr("open chunk", err)
			return false
		}
		t.f = f
	}
	if t.rd == nil {
		t.rd = startReader(t.f, t.read, t.final, s.o.Durable)
		t.cur, t.ci = nil, 0
	}
	var run *qrun
	defer func() { s.flushRun(t, run) }()
	for s.inWindow() < len(s.ring)-1 && !s.retrying {
		if t.cur == nil || t.ci >= len(t.cur.lines) {
			if t.cur != nil && t.cur.end {
				err := t.cur.err
				s.resetReader(t)
				if err != nil {
					s.noteErr("read chunk", err)
					return false
				}
				t.atEOF = true
				if t.final {
					// A final chunk's size is fixed; its end means done.
					t.read = t.c.Size
					return true
				}
				return false
			}
			// Blocks only while the reader reads a local file.
			t.cur, t.ci = <-t.rd.out, 0
			continue
		}
		ln := &t.cur.lines[t.ci]
		if ln.Err == nil && int64(len(ln.Data))+1024 > s.pub.MaxPayload() {
			ln.Err = fmt.Errorf("line of %d bytes is over the server's max payload (%d)", len(ln.Data), s.pub.MaxPayload())
		}
		if ln.Err != nil {
			run = s.quarantineLine(t, run, ln)
			if s.retrying {
				// Flushing the previous run failed and the retry has
				// rewound t.read to the acknowledged prefix: keep it.
				run = nil
				break
			}
			t.ci++
			t.read = ln.Next
			continue
		}
		if run != nil {
			s.flushRun(t, run)
			run = nil
			if s.retrying {
				break
			}
		}
		if !s.publish(t, ln) {
			s.resetReader(t) // this line is read again after the retry
			return false
		}
		t.ci++
		t.read = ln.Next
	}
	if s.retrying {
		s.resetReader(t)
	}
	return false
}

func (s *Shipper) publish(t *tracker, ln *spool.Line) bool {
	r := ln.Rec
	data := ln.Data // owned by its batch, so the client may resend it later
	id := s.tail
	m := Message{
		Subject: s.o.Prefix + ".events." + r.ServerID + "." + r.Type,
		Data:    data,
		EventID: r.EventID,
		Seq:     r.Seq,
		SpoolID: r.SpoolID,
		Server:  r.ServerID,
	}
	err := s.pub.Publish(m, func(err error) { s.acks <- ack{id: id, err: err} })
	if err != nil {
		s.fail(fmt.Errorf("publish: %w", err))
		return false
	}
	s.push(t, ln.Next, 0)
	s.unres++
	if r.Seq > t.maxSeq {
		t.maxSeq = r.Seq
	}
	s.stats.sent++
	crash(CrashMidPublish)
	return true
}

func (s *Shipper) push(t *tracker, next int64, st int8) {
	id := s.tail
	s.ring[id%uint64(len(s.ring))] = entry{id: id, t: t, next: next, st: st}
	s.tail++
	t.infl++
}

func (s *Shipper) drainAcks() {
	for {
		select {
		case a := <-s.acks:
			s.onAck(a)
		default:
			return
		}
	}
}

func (s *Shipper) onAck(a ack) {
	e := &s.ring[a.id%uint64(len(s.ring))]
	if e.id != a.id || a.id < s.head || e.st != 0 {
		return // a slot already cleared by a retry
	}
	s.unres--
	if a.err != nil {
		e.st = 2
		s.fail(a.err)
	} else {
		e.st = 1
		s.stats.acked++
		s.stats.lastOK = time.Now()
		if s.failures > 0 && !s.retrying {
			s.recovered()
		}
	}
	s.pop()
	s.maybeSettle()
}

// pop advances each chunk's acknowledged prefix over the done entries at
// the head of the window.
func (s *Shipper) pop() {
	moved := false
	for s.head < s.tail {
		e := &s.ring[s.head%uint64(len(s.ring))]
		if e.st != 1 {
			break
		}
		t := e.t
		t.infl--
		if !t.gone && e.next > t.acked {
			if t.final && t.lines > 0 {
				t.lines--
			}
			t.acked = e.next
			moved = true
		}
		e.t = nil
		s.head++
	}
	if moved {
		s.dirty = true
		crash(CrashAfterAckBeforeProgress)
	}
}

// fail starts a retry: no new publishes until every outstanding one has an
// outcome, then a backoff, then everything unacknowledged is read again
// and republished under the same event ids.
func (s *Shipper) fail(err error) {
	s.stats.lastErr, s.stats.lastErrAt = err.Error(), time.Now()
	if s.retrying {
		return
	}
	s.retrying = true
	s.failures++
	s.stats.retries++
	if s.failures == 1 {
		s.failSince = time.Now()
		s.lastFailLg = time.Now()
		s.log.Warn("delivery failing; will retry unacknowledged events", "err", err.Error(), "nats", s.pub.State())
	} else if time.Since(s.lastFailLg) >= time.Minute {
		s.lastFailLg = time.Now()
		s.log.Warn("delivery still failing", "err", err.Error(), "failures", s.failures, "since", s.failSince.UTC().Format(time.RFC3339))
	}
	s.maybeSettle()
}

func (s *Shipper) maybeSettle() {
	if s.retrying && !s.settled && s.unres == 0 {
		s.settle()
	}
}

// settle runs once every outstanding publish has an outcome after a
// failure: drop the window, rewind every chunk to its acknowledged prefix
// and wait out the backoff.
func (s *Shipper) settle() {
	s.pop()
	for s.head < s.tail {
		e := &s.ring[s.head%uint64(len(s.ring))]
		if e.t != nil {
			e.t.infl--
		}
		*e = entry{}
		s.head++
	}
	for _, t := range s.chunks {
		t.read = t.acked
		s.resetReader(t)
	}
	s.settled = true
	s.retryTimer.Reset(s.bo.NextBackOff())
}

func (s *Shipper) resume() {
	if !s.settled {
		return
	}
	s.retrying, s.settled = false, false
}

func (s *Shipper) recovered() {
	s.log.Info("delivery recovered", "failures", s.failures, "outage", time.Since(s.failSince).Round(time.Millisecond).String())
	s.failures = 0
	s.bo.Reset()
}

// finishChunks deletes every rotated chunk that is fully acknowledged:
// first the durable state without it (and with the high-water mark above
// its seqs), then the file.
func (s *Shipper) finishChunks() {
	for len(s.chunks) > 0 {
		t := s.chunks[0]
		if !t.final || t.acked < t.c.Size || t.infl > 0 {
			return
		}
		if err := s.drop(t); err != nil {
			s.noteErr("delete chunk", err)
			return
		}
	}
}

// drop forgets t in a durable save, then removes its file.
func (s *Shipper) drop(t *tracker) error {
	s.st.Forget(t.c)
	if hwm := max(t.maxSeq, chunkSeq(t.c.Name)); hwm > s.st.HWM {
		s.st.HWM = hwm
	}
	if err := s.save(true); err != nil {
		return err
	}
	crash(CrashMidDelete)
	s.closeTracker(t)
	if err := s.sp.Remove(t.c); err != nil {
		return err
	}
	t.gone = true
	delete(s.byIno, t.c.Ino)
	for i, x := range s.chunks {
		if x == t {
			s.chunks = append(s.chunks[:i], s.chunks[i+1:]...)
			break
		}
	}
	return nil
}

// save writes every tracker's progress. Only deletions need durable: a lost
// progress save means re-sending events JetStream then drops as duplicates.
func (s *Shipper) save(durable bool) error {
	for _, t := range s.chunks {
		if t.acked > 0 {
			s.st.SetProgress(t.c, t.acked)
		}
	}
	if err := s.sp.SaveState(s.st, durable); err != nil {
		s.noteErr("save progress", err)
		return err
	}
	s.dirty = false
	s.lastSav = time.Now()
	return nil
}

// maybeRotate moves the active file into pending/ when it is big, or when
// it is fully acknowledged and idle, so that it can be deleted. Rotation is
// never what an event waits for: the active file is read as it grows.
func (s *Shipper) maybeRotate() {
	t := s.active()
	if t == nil {
		return
	}
	if t.f == nil {
		// Not read yet (NATS is away): the size still decides rotation,
		// so that the cap can drop old chunks rather than everything.
		f, err := s.sp.OpenChunk(t.c)
		if err != nil {
			s.refresh() // rotated or replaced under us
			return
		}
		t.f = f
	}
	fi, err := t.f.Stat()
	if err != nil {
		return
	}
	if fi.Size() != t.c.Size {
		t.c.Size = fi.Size()
		t.grew = time.Now()
		t.atEOF = false
	}
	size := t.c.Size
	// Idle: read to the end, all of it acknowledged, nothing new for a
	// while. A torn tail left by a dead writer then becomes a final
	// chunk's malformed last line and is quarantined.
	idle := size > 0 && t.atEOF && t.acked == t.read && t.infl == 0 && time.Since(t.grew) >= s.o.IdleRotate && s.inWindow() == 0
	if size < s.o.RotateBytes && !idle {
		return
	}
	s.rotate()
}

func (s *Shipper) rotate() {
	c, ok, err := s.sp.Rotate()
	if err != nil {
		s.noteErr("rotate", err)
		return
	}
	if !ok {
		return
	}
	crash(CrashAfterRotate)
	t := s.byIno[c.Ino]
	if t == nil {
		s.refresh()
		return
	}
	t.c, t.final = c, true
	s.resetReader(t) // re-read as final: a torn tail is now malformed
	s.dirty = true
}

func (s *Shipper) noteErr(what string, err error) {
	msg := what + ": " + err.Error()
	if s.stats.lastErr != msg {
		s.log.Warn("spool error", "op", what, "err", err.Error())
	}
	s.stats.lastErr, s.stats.lastErrAt = msg, time.Now()
}

// shutdown waits for in-flight acks within the drain bound and saves.
func (s *Shipper) shutdown() error {
	s.stopping = true
	if s.unres > 0 {
		s.log.Info("draining in-flight publishes", "in_flight", s.unres, "timeout", s.o.DrainTimeout.String())
		deadline := time.NewTimer(s.o.DrainTimeout)
		defer deadline.Stop()
	wait:
		for s.unres > 0 {
			select {
			case a := <-s.acks:
				s.onAck(a)
			case <-deadline.C:
				s.log.Warn("drain timed out; unacknowledged events are sent again at the next start", "in_flight", s.unres)
				break wait
			case <-s.o.Abort:
				s.log.Warn("drain aborted; unacknowledged events are sent again at the next start", "in_flight", s.unres)
				break wait
			}
		}
	}
	s.finishChunks()
	err := s.save(true)
	s.writeStatus()
	return err
}
