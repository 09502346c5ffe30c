package postgres

import (
	"testing"

	"github.com/google/uuid"
)

// TestUUIDArg: a uuid goes to COPY as its 16 bytes; text that is no uuid
// stays text, for the server to refuse by name (not a panic here).
func TestUUIDArg(t *testing.T) {
	const s = "0190c1d2-3e4f-7a5b-8c6d-7e8f90a1b2c3"
	b, ok := uuidArg(s).([16]byte)
	if !ok || uuid.UUID(b).String() != s {
		t.Fatalf("uuidArg(%q) = %v, want its 16 bytes", s, uuidArg(s))
	}
	if v, ok := uuidArg("not-a-uuid").(string); !ok || v != "not-a-uuid" {
		t.Fatalf("uuidArg(not-a-uuid) = %v, want the text back", uuidArg("not-a-uuid"))
	}
}
