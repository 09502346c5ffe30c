package main

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger/ledgertest"
)

// TestSQLiteLockedThenFree: another process holds the SQLite file's write
// lock longer than the ledger's busy timeout (a backup tool, an operator's
// sqlite3 shell): the ledger's commit fails, it says so once, retries with
// backoff without acknowledging anything, and applies everything once when
// the lock is released.
func TestSQLiteLockedThenFree(t *testing.T) {
	addr := freePort(t)
	b := newBed(t, "sqlite", map[string]string{"LEDGER_METRICS_LISTEN": addr})
	msgs := workload(51, 2000)
	b.publish(msgs[:500])
	p := b.serve("")
	s := b.open()
	b.waitApplied(s, b.lastSeq(), time.Minute, p)
	// An exclusive transaction from another connection.
	db, err := sql.Open("sqlite", "file:"+b.db+"?_pragma=busy_timeout(1000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctxb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctxb, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	b.publish(msgs[500:])
	waitFor(t, "the ledger reports the database down", 60*time.Second, func() bool { return metric(t, addr, "ocserv_ledger_database_up") == 0 }, p.out.String)
	if _, err := conn.ExecContext(ctxb, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	b.waitApplied(s, b.lastSeq(), 2*time.Minute, p)
	waitFor(t, "the ledger reports the database up", 30*time.Second, func() bool { return metric(t, addr, "ocserv_ledger_database_up") == 1 }, p.out.String)
	if n := strings.Count(p.out.String(), "ledger ingest: database-down"); n != 1 {
		t.Errorf("%d log lines for the database going down, want one:\n%s", n, p.out.String())
	}
	p.stop()
	sameTables(t, "after the lock was released", ledgertest.Checksum(t, s), b.reference())
}
