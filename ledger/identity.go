package ledger

import "time"

// IdentityColumns are the sessions table's columns after session_uid, in
// the order both engines list them. A stored session rewritten by a batch
// is updated in the columns that changed only (Changes.Changed): SQLite
// chooses the indexes an UPDATE rewrites from its SET list, not from the
// values, so a disconnect that sets every column would rewrite every index
// of the sessions table although it changes only the end columns.
var IdentityColumns = []string{"logical_uid", "server_id", "spool_id", "username", "groupname", "vhost", "worker_id", "device",
	"ip_real", "ip_real_local", "vpn_ipv4", "vpn_ipv4_local", "vpn_ipv6", "vpn_ipv6_local", "hostname", "user_agent",
	"device_type", "device_platform", "cookie_id", "connected_at", "connected_coarse", "ended_at", "ended_coarse",
	"state", "end_reason", "origin"}

// ColumnSet is a set of IdentityColumns: bit i is IdentityColumns[i].
type ColumnSet uint32

// Has reports whether IdentityColumns[i] is in the set.
func (c ColumnSet) Has(i int) bool { return c&(1<<i) != 0 }

// identityEq compares one identity column of two sessions, in the order
// of IdentityColumns.
var identityEq = [...]func(a, b *Session) bool{
	func(a, b *Session) bool { return a.LogicalUID == b.LogicalUID },
	func(a, b *Session) bool { return a.ServerID == b.ServerID },
	func(a, b *Session) bool { return a.SpoolID == b.SpoolID },
	func(a, b *Session) bool { return a.Username == b.Username },
	func(a, b *Session) bool { return a.Groupname == b.Groupname },
	func(a, b *Session) bool { return a.VHost == b.VHost },
	func(a, b *Session) bool { return a.WorkerID == b.WorkerID },
	func(a, b *Session) bool { return a.Device == b.Device },
	func(a, b *Session) bool { return a.IPReal == b.IPReal },
	func(a, b *Session) bool { return a.IPRealLocal == b.IPRealLocal },
	func(a, b *Session) bool { return a.VPNIPv4 == b.VPNIPv4 },
	func(a, b *Session) bool { return a.VPNIPv4Local == b.VPNIPv4Local },
	func(a, b *Session) bool { return a.VPNIPv6 == b.VPNIPv6 },
	func(a, b *Session) bool { return a.VPNIPv6Local == b.VPNIPv6Local },
	func(a, b *Session) bool { return a.Hostname == b.Hostname },
	func(a, b *Session) bool { return a.UserAgent == b.UserAgent },
	func(a, b *Session) bool { return a.DeviceType == b.DeviceType },
	func(a, b *Session) bool { return a.DevicePlatform == b.DevicePlatform },
	func(a, b *Session) bool { return a.CookieID == b.CookieID },
	func(a, b *Session) bool { return sameTime(a.ConnectedAt, b.ConnectedAt) },
	func(a, b *Session) bool { return a.ConnectedCoarse == b.ConnectedCoarse },
	func(a, b *Session) bool { return sameTime(a.EndedAt, b.EndedAt) },
	func(a, b *Session) bool { return a.EndedCoarse == b.EndedCoarse },
	func(a, b *Session) bool { return a.State == b.State },
	func(a, b *Session) bool { return a.EndReason == b.EndReason },
	func(a, b *Session) bool { return a.Origin == b.Origin },
}

func sameTime(a, b time.Time) bool { return a.Equal(b) }

// IdentityDiff is the set of identity columns in which a and b differ.
func IdentityDiff(a, b *Session) ColumnSet {
	var c ColumnSet
	for i, eq := range identityEq {
		if !eq(a, b) {
			c |= 1 << i
		}
	}
	return c
}
