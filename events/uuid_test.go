package events

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// Checked against google/uuid's parser: version, variant and timestamp.
func TestNewUUIDv7(t *testing.T) {
	before := time.Now().UnixMilli()
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s := NewUUIDv7()
		u, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			t.Fatalf("%q: %v", s, err)
		}
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v", s, u.Version(), u.Variant())
		}
		sec, nsec := u.Time().UnixTime()
		ms := sec*1000 + nsec/1e6
		if ms < before || ms > time.Now().UnixMilli() {
			t.Fatalf("%s: timestamp %d outside [%d, now]", s, ms, before)
		}
		if seen[s] {
			t.Fatalf("duplicate %s", s)
		}
		seen[s] = true
	}
}
