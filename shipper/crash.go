package shipper

import (
	"os"
	"strconv"

	"github.com/ocserv-telemetry/ocserv-telemetry/internal/crashpoint"
)

// The shipper's crash points, for tests only (see package crashpoint):
// OCSERV_TELEMETRY_CRASHPOINT=<name> kills the process there with SIGKILL,
// and OCSERV_TELEMETRY_CRASHPOINT_AFTER=N lets the first N-1 passes live,
// so a test can die in the middle of a run rather than at its first turn.
const (
	CrashAfterRotate            = "after-rotate"               // queue renamed into pending/, progress not saved
	CrashMidPublish             = "mid-publish"                // part of a window published, acks not seen
	CrashAfterAckBeforeProgress = "after-ack-before-progress"  // acks counted, progress not saved
	CrashMidDelete              = "mid-delete"                 // state saved without the chunk, file not removed
	CrashAfterOverflowNotice    = "after-overflow-before-drop" // overflow notice written, chunk not dropped
)

// CrashAfterEnv sets how many passes of the armed point live.
const CrashAfterEnv = "OCSERV_TELEMETRY_CRASHPOINT_AFTER"

var (
	crashAfter = func() int {
		n, _ := strconv.Atoi(os.Getenv(CrashAfterEnv))
		return n
	}()
	crashHits = map[string]int{}
)

// crash counts a pass of point and dies there when the test asked for it.
// Only the loop's goroutine calls it, so the map needs no lock.
func crash(point string) {
	if !crashpoint.Armed(point) {
		return
	}
	crashHits[point]++
	if crashHits[point] >= crashAfter {
		crashpoint.Hit(point)
	}
}
