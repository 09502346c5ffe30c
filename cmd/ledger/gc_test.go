package main

import (
	"runtime/debug"
	"testing"
)

// TestGCDefaults: serve sets the collector's soft limit for its engine and
// its pacing, unless GOMEMLIMIT or GOGC say otherwise (the runtime has
// read those already); both limits stay under the design's 128 MiB.
func TestGCDefaults(t *testing.T) {
	limit, percent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	t.Cleanup(func() { debug.SetMemoryLimit(limit); debug.SetGCPercent(percent) })

	for _, pg := range []bool{false, true} {
		debug.SetMemoryLimit(1 << 40)
		debug.SetGCPercent(100)
		gcDefaults(func(string) string { return "" }, pg)
		want := int64(sqliteMemoryLimit)
		if pg {
			want = postgresMemoryLimit
		}
		if got := debug.SetMemoryLimit(-1); got != want || got >= 128<<20 {
			t.Errorf("postgres %v: memory limit %d, want %d (under 128 MiB)", pg, got, want)
		}
		if got := debug.SetGCPercent(100); got != defaultGCPercent {
			t.Errorf("GC percent %d, want %d", got, defaultGCPercent)
		}

		debug.SetMemoryLimit(1 << 40)
		debug.SetGCPercent(100)
		gcDefaults(func(k string) string { return map[string]string{"GOMEMLIMIT": "1GiB", "GOGC": "100"}[k] }, pg)
		if got := debug.SetMemoryLimit(-1); got != 1<<40 {
			t.Errorf("memory limit %d with GOMEMLIMIT set: changed", got)
		}
		if got := debug.SetGCPercent(100); got != 100 {
			t.Errorf("GC percent %d with GOGC set: changed", got)
		}
	}
}
