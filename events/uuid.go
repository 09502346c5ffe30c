package events

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"
)

// NewUUIDv7 returns a time-ordered UUID (RFC 9562 §5.7): 48 bits of Unix
// milliseconds, then random bits. It lives here rather than coming from
// google/uuid because that package pulls net and database/sql into the
// hook, whose start-up is measured against a bare Go program; the shipper
// uses google/uuid for everything else (v5 ids of derived events).
func NewUUIDv7() string {
	var u [16]byte
	Random(u[:])
	ms := uint64(time.Now().UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(u[0:6], ts[2:8])
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	var b [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hex[c>>4], hex[c&0xf]
		j += 2
	}
	return string(b[:])
}

// Random fills b from the kernel's CSPRNG with getrandom(2), the source
// crypto/rand reads too. Importing crypto/rand would link Go's whole FIPS
// module (AES, GCM, DRBG, SHA-2/3), and the Go runtime walks every linked
// function at start-up: a cost each hook process would pay for nothing.
func Random(b []byte) {
	for len(b) > 0 {
		n, err := unix.Getrandom(b, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			panic("getrandom: " + err.Error()) // cannot fail on Linux ≥ 3.17
		}
		b = b[n:]
	}
}
