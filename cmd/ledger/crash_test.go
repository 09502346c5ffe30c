package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ingest"
	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

var engines = []string{"sqlite", "postgres"}

// TestCrashPointsExactlyOnce kills the real service with SIGKILL at each
// named crash point, again and again, while events keep arriving; then
// lets it catch up. The tables must equal a rebuild from the stream, and
// `ledger replay --from 1` into a new database must give the same
// checksum.
func TestCrashPointsExactlyOnce(t *testing.T) {
	for _, engine := range engines {
		for _, point := range []string{ingest.CrashAfterCommit, ledger.CrashMidBatch} {
			t.Run(engine+"/"+point, func(t *testing.T) {
				b := newBed(t, engine, nil)
				msgs := workload(21, 3000)
				// A schema-violating event in the middle never blocks.
				g := ledgertest.NewGen("vpn7", nil)
				msgs = append(msgs[:1500], append([]ledger.Message{g.Raw("connect", []byte(`{"v":1,"type":"connect"}`))}, msgs[1500:]...)...)
				b.publish(msgs[:1000])
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					// Events keep arriving during the crashes.
					defer wg.Done()
					for i := 1000; i < len(msgs); i += 250 {
						b.publish(msgs[i:min(i+250, len(msgs))])
						time.Sleep(20 * time.Millisecond)
					}
				}()
				s := b.open()
				crashes := 0
				var prev uint64
				for i := 0; i < 6; i++ {
					p := b.serve(point)
					select {
					case <-p.done:
					case <-time.After(60 * time.Second):
						t.Fatalf("the service did not reach crash point %s:\n%s", point, p.out.String())
					}
					if !p.killedBySignal() {
						t.Fatalf("run %d ended without reaching the crash point:\n%s", i, p.out.String())
					}
					crashes++
					pos, err := s.Position(ctxb)
					if err != nil {
						t.Fatal(err)
					}
					// After the commit, each run's first batch stays
					// (and is not applied again by the next run); in the
					// middle of the batch nothing of it does.
					switch {
					case point == ingest.CrashAfterCommit && pos.StreamSeq <= prev:
						t.Fatalf("crash %d after commit: position %d did not advance past %d", i, pos.StreamSeq, prev)
					case point == ledger.CrashMidBatch && pos.StreamSeq != 0:
						t.Fatalf("crash %d mid-batch: position %d, want nothing committed", i, pos.StreamSeq)
					}
					prev = pos.StreamSeq
				}
				wg.Wait()
				p := b.serve("")
				b.waitApplied(s, b.lastSeq(), 2*time.Minute, p)
				p.stop()
				want := b.reference()
				sameTables(t, "after "+fmt.Sprint(crashes)+" crashes at "+point, ledgertest.Checksum(t, s), want)
				if rej, _ := s.Rejected(ctxb, 10); len(rej) != 1 {
					t.Errorf("rejected rows: %+v, want the one bad event", rej)
				}
				// Rebuild with the real binary into a new database.
				fresh := filepath.Join(t.TempDir(), "rebuilt.db")
				if engine == "postgres" {
					fresh = freshPG(t)
				}
				out, err := b.run("replay", "--from", "1", "--db", fresh)
				if err != nil || !strings.Contains(out, "replayed") {
					t.Fatalf("ledger replay: %v\n%s", err, out)
				}
				r := openDSN(t, fresh)
				sameTables(t, "ledger replay --from 1", ledgertest.Checksum(t, r), want)
			})
		}
	}
}
