package shipper

import (
	"fmt"
	"io"
	"math"
	"os"
	"syscall"

	"github.com/ocserv-telemetry/ocserv-telemetry/spool"
)

// Read-ahead sizes: a batch is handed to the loop at once, so the loop
// pays one channel operation per batch, not per line.
const (
	batchLines = 256
	batchBytes = 256 << 10
	readAhead  = 4 // batches queued ahead of the loop
)

// lineReader scans one spool file on a goroutine of its own, ahead of the
// loop: reading and checking a line (JSON validation, mostly) then runs on
// one core while the loop publishes on another. It ends at the end of the
// file; the loop starts a new one at its own offset whenever it reads
// again, so the loop's offset stays the only one that counts.
type lineReader struct {
	out  chan *batch
	stop chan struct{}
}

// batch is a run of lines whose Data the batch owns: a publish may hold on
// to it until the message is acknowledged.
type batch struct {
	lines []spool.Line
	end   bool  // the scan stopped after these lines
	err   error // why, if not the end of the file
}

// startReader reads f from off. With durable set, each batch is made
// durable (fdatasync) before the loop may publish it: the hook syncs after
// releasing the spool lock, so the shipper can read a line before its
// writer's sync has finished; published and then lost to a power cut, its
// seq could be handed out again. Syncing pages the hook already synced is
// cheap, and it costs the shipper, not a login.
func startReader(f *os.File, off int64, final, durable bool) *lineReader {
	r := &lineReader{out: make(chan *batch, readAhead), stop: make(chan struct{})}
	go r.run(f, off, final, durable)
	return r
}

func (r *lineReader) run(f *os.File, off int64, final, durable bool) {
	// A section reader uses pread: several readers of one descriptor (an
	// old one still winding down) never move each other's offset.
	sc := spool.NewScanner(io.NewSectionReader(f, off, math.MaxInt64-off), off, final)
	sc.SetParse(parseRecord)
	for {
		b := &batch{lines: make([]spool.Line, 0, 16)}
		var arena []byte
		for len(b.lines) < batchLines && len(arena) < batchBytes {
			if !sc.Scan() {
				b.end, b.err = true, sc.Err()
				break
			}
			ln := *sc.Line()
			if ln.Data != nil {
				if cap(arena)-len(arena) < len(ln.Data) {
					arena = make([]byte, 0, max(batchBytes, len(ln.Data)))
				}
				n := len(arena)
				arena = append(arena, ln.Data...)
				ln.Data = arena[n:len(arena):len(arena)]
			}
			b.lines = append(b.lines, ln)
		}
		if durable && len(b.lines) > 0 && b.err == nil {
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				b.lines, b.end, b.err = nil, true, fmt.Errorf("fdatasync before publishing: %w", err)
			}
		}
		select {
		case r.out <- b:
		case <-r.stop:
			return
		}
		if b.end {
			return
		}
	}
}

// resetReader drops t's read-ahead; the next read starts again at t.read.
func (s *Shipper) resetReader(t *tracker) {
	if t.rd != nil {
		close(t.rd.stop)
		t.rd = nil
	}
	t.cur, t.ci = nil, 0
}
