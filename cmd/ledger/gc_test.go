package main

import (
	"runtime/debug"
	"testing"
)

// TestGCDefaults: serve sets the collector's soft limit and pacing unless
// GOMEMLIMIT or GOGC say otherwise (the runtime has read those already).
func TestGCDefaults(t *testing.T) {
	limit, percent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	t.Cleanup(func() { debug.SetMemoryLimit(limit); debug.SetGCPercent(percent) })

	debug.SetMemoryLimit(1 << 40)
	debug.SetGCPercent(100)
	gcDefaults(func(string) string { return "" })
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Errorf("memory limit %d, want %d", got, defaultMemoryLimit)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GC percent %d, want %d", got, defaultGCPercent)
	}

	debug.SetMemoryLimit(1 << 40)
	debug.SetGCPercent(100)
	gcDefaults(func(k string) string { return map[string]string{"GOMEMLIMIT": "1GiB", "GOGC": "100"}[k] })
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("memory limit %d with GOMEMLIMIT set: changed", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent %d with GOGC set: changed", got)
	}
}
