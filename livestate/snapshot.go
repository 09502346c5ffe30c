package livestate

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ocserv-telemetry/ocserv-telemetry/ocserv"
)

// Snapshot kinds: the last token of <prefix>.snapshots.<server_id>.<kind>.
const (
	KindUsers     = "users"
	KindStatus    = "status"
	KindBans      = "bans"
	KindBanPoints = "ban-points"
)

// Kinds lists every snapshot kind.
var Kinds = []string{KindUsers, KindStatus, KindBans, KindBanPoints}

// Headers of every snapshot message (docs/livestate.md).
const (
	HdrSnapshotID = "Ocserv-Snapshot-Id"
	HdrKind       = "Ocserv-Snapshot-Kind"
	HdrPart       = "Ocserv-Snapshot-Part"
	HdrParts      = "Ocserv-Snapshot-Parts"
)

// Snapshot is one message (one part) of a snapshot. A snapshot too large
// for the server's max payload is split between items; every part is a
// complete JSON document, and the snapshot is the concatenation of the
// parts' items in part order.
type Snapshot struct {
	V             int               `json:"v"`
	ServerID      string            `json:"server_id"`
	SpoolID       string            `json:"spool_id,omitempty"`
	Kind          string            `json:"kind"`
	Time          string            `json:"time"`
	SnapshotID    string            `json:"snapshot_id"`
	Part          int               `json:"part"`
	Parts         int               `json:"parts"`
	Count         int               `json:"count"`             // items in the whole snapshot
	Dropped       int               `json:"dropped,omitempty"` // items larger than a message on their own
	OcservVersion string            `json:"ocserv_version,omitempty"`
	Items         []json.RawMessage `json:"items"`
}

// UserItem is one worker in a users snapshot.
type UserItem struct {
	ID                 int      `json:"id"`
	Username           string   `json:"username,omitempty"`
	Groupname          string   `json:"groupname,omitempty"`
	State              string   `json:"state,omitempty"`
	VHost              string   `json:"vhost,omitempty"`
	Device             string   `json:"device,omitempty"`
	MTU                int      `json:"mtu,omitempty"`
	RemoteIP           string   `json:"remote_ip,omitempty"`
	LocalDeviceIP      string   `json:"local_device_ip,omitempty"`
	IPv4               string   `json:"ipv4,omitempty"`
	PTPIPv4            string   `json:"ptp_ipv4,omitempty"`
	IPv6               string   `json:"ipv6,omitempty"`
	PTPIPv6            string   `json:"ptp_ipv6,omitempty"`
	UserAgent          string   `json:"user_agent,omitempty"`
	Hostname           string   `json:"hostname,omitempty"`
	BytesIn            *uint64  `json:"bytes_in,omitempty"`
	BytesOut           *uint64  `json:"bytes_out,omitempty"`
	LimitRX            string   `json:"limit_rx,omitempty"`
	LimitTX            string   `json:"limit_tx,omitempty"`
	ConnectedAt        string   `json:"connected_at,omitempty"`
	ConnectedAtCoarse  bool     `json:"connected_at_coarse,omitempty"`
	SessionID          string   `json:"session_id,omitempty"`
	DPDS               int64    `json:"dpd_s,omitempty"`
	KeepAliveS         int64    `json:"keepalive_s,omitempty"`
	TLSCiphersuite     string   `json:"tls_ciphersuite,omitempty"`
	DTLSCipher         string   `json:"dtls_cipher,omitempty"`
	DNS                []string `json:"dns,omitempty"`
	Routes             []string `json:"routes,omitempty"`
	DefaultRoute       bool     `json:"default_route,omitempty"`
	NoRoutes           []string `json:"no_routes,omitempty"`
	IRoutes            []string `json:"iroutes,omitempty"`
	RestrictedToRoutes bool     `json:"restricted_to_routes,omitempty"`
	RestrictedToPorts  []string `json:"restricted_to_ports,omitempty"`
	SessionUID         string   `json:"session_uid,omitempty"`
	LogicalSessionUID  string   `json:"logical_session_uid,omitempty"`
}

func addr(a interface {
	IsValid() bool
	String() string
}) string {
	if a.IsValid() {
		return a.String()
	}
	return ""
}

// userItem converts an occtl user; info is what the session table links
// to it (may be zero).
func userItem(u ocserv.User, info WorkerInfo) UserItem {
	it := UserItem{
		ID: u.ID, Username: u.Username, Groupname: u.Groupname, State: u.State, VHost: u.VHost,
		Device: u.Device, MTU: u.MTU, RemoteIP: addr(u.RemoteIP), LocalDeviceIP: addr(u.LocalDeviceIP),
		IPv4: addr(u.IPv4), PTPIPv4: addr(u.PTPIPv4), IPv6: addr(u.IPv6), PTPIPv6: addr(u.PTPIPv6),
		UserAgent: u.UserAgent, Hostname: u.Hostname, LimitRX: u.LimitRX, LimitTX: u.LimitTX,
		ConnectedAt: fmtTime(u.ConnectedAt), ConnectedAtCoarse: u.ConnectedAtCoarse, SessionID: u.Session,
		DPDS: int64(u.DPD / time.Second), KeepAliveS: int64(u.KeepAlive / time.Second),
		TLSCiphersuite: u.TLSCiphersuite, DTLSCipher: u.DTLSCipher, DNS: u.DNS, Routes: u.Routes,
		DefaultRoute: u.DefaultRoute, NoRoutes: u.NoRoutes, IRoutes: u.IRoutes,
		RestrictedToRoutes: u.RestrictedToRoutes, RestrictedToPorts: u.RestrictedToPorts,
		SessionUID: info.SessionUID, LogicalSessionUID: info.LogicalSessionUID,
	}
	if u.HasCounters {
		in, out := u.RX, u.TX
		it.BytesIn, it.BytesOut = &in, &out
	}
	return it
}

// StatusItem is the one item of a status snapshot.
type StatusItem struct {
	Status                 string `json:"status"`
	Online                 bool   `json:"online"`
	Error                  string `json:"error,omitempty"` // why occtl could not be read (status is then the occtl state)
	ServerPID              int    `json:"server_pid,omitempty"`
	SecModPID              int    `json:"sec_mod_pid,omitempty"`
	SecModInstances        int    `json:"sec_mod_instances,omitempty"`
	UpSince                string `json:"up_since,omitempty"`
	UpSinceCoarse          bool   `json:"up_since_coarse,omitempty"`
	UptimeS                int64  `json:"uptime_s"`
	ActiveSessions         int64  `json:"active_sessions"`
	TotalSessions          int64  `json:"total_sessions"`
	TotalAuthFailures      int64  `json:"total_auth_failures"`
	IPsInBanList           int64  `json:"ips_in_ban_list"`
	SessionsHandled        int64  `json:"sessions_handled"`
	TimedOutSessions       int64  `json:"timed_out_sessions"`
	TimedOutIdleSessions   int64  `json:"timed_out_idle_sessions"`
	ClosedDueToError       int64  `json:"closed_due_to_error_sessions"`
	AuthFailures           int64  `json:"auth_failures"`
	LastStatsReset         string `json:"last_stats_reset,omitempty"`
	AvgAuthTimeS           int64  `json:"avg_auth_time_s"`
	MaxAuthTimeS           int64  `json:"max_auth_time_s"`
	AvgSessionTimeS        int64  `json:"avg_session_time_s"`
	MaxSessionTimeS        int64  `json:"max_session_time_s"`
	RawMedianLatency       int64  `json:"raw_median_latency"`
	RawStdevLatency        int64  `json:"raw_stdev_latency"`
	BytesInSinceStatsReset uint64 `json:"rx_bytes"`
	BytesOutSinceReset     uint64 `json:"tx_bytes"`
}

func statusItem(s ocserv.Status) StatusItem {
	sec := func(d time.Duration) int64 { return int64(d / time.Second) }
	return StatusItem{
		Status: s.Status, Online: s.Online, ServerPID: s.ServerPID, SecModPID: s.SecModPID,
		SecModInstances: s.SecModInstances, UpSince: fmtTime(s.UpSince), UpSinceCoarse: s.UpSinceCoarse,
		UptimeS: sec(s.Uptime), ActiveSessions: s.ActiveSessions, TotalSessions: s.TotalSessions,
		TotalAuthFailures: s.TotalAuthFailures, IPsInBanList: s.IPsInBanList, SessionsHandled: s.SessionsHandled,
		TimedOutSessions: s.TimedOutSessions, TimedOutIdleSessions: s.TimedOutIdle, ClosedDueToError: s.ClosedDueToError,
		AuthFailures: s.AuthFailures, LastStatsReset: fmtTime(s.LastStatsReset),
		AvgAuthTimeS: sec(s.AvgAuthTime), MaxAuthTimeS: sec(s.MaxAuthTime),
		AvgSessionTimeS: sec(s.AvgSessionTime), MaxSessionTimeS: sec(s.MaxSessionTime),
		RawMedianLatency: s.RawMedianLatency, RawStdevLatency: s.RawStdevLatency,
		BytesInSinceStatsReset: s.RX, BytesOutSinceReset: s.TX,
	}
}

// BanItem is one address of a bans or ban-points snapshot.
type BanItem struct {
	IP    string `json:"ip"`
	Score int64  `json:"score"`
	// Expires is occtl's "Since", which is the ban's expiry time.
	Expires       string `json:"expires,omitempty"`
	ExpiresCoarse bool   `json:"expires_coarse,omitempty"`
}

func banItem(b ocserv.Ban) BanItem {
	return BanItem{IP: addr(b.IP), Score: b.Score, Expires: fmtTime(b.Since), ExpiresCoarse: b.SinceCoarse}
}

// marshalItems encodes each item on its own.
func marshalItems[T any](items []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Split packs items into parts of at most limit bytes each (the encoded
// Snapshot), keeping their order. An item that does not fit into an empty
// part is left out and counted in Dropped. head carries the envelope's
// fields; Part, Parts, Count, Dropped and Items are set here. There is
// always at least one part (an empty snapshot says "nothing", which is
// information too).
func Split(head Snapshot, items []json.RawMessage, limit int) ([][]byte, int, error) {
	env := head
	env.Items = []json.RawMessage{}
	env.Count = len(items)
	// Room for the largest part numbers and a dropped count.
	env.Part, env.Parts, env.Dropped = 1<<30, 1<<30, 1<<30
	base, err := json.Marshal(env)
	if err != nil {
		return nil, 0, err
	}
	room := limit - len(base)
	if room <= 0 {
		return nil, 0, fmt.Errorf("snapshot envelope (%d bytes) does not fit a message of %d bytes", len(base), limit)
	}
	var groups [][]json.RawMessage
	var cur []json.RawMessage
	used, dropped := 0, 0
	for _, it := range items {
		n := len(it)
		if len(cur) > 0 {
			n++ // the comma
		}
		if len(it) > room {
			dropped++
			continue
		}
		if used+n > room {
			groups = append(groups, cur)
			cur, used, n = nil, 0, len(it)
		}
		cur = append(cur, it)
		used += n
	}
	groups = append(groups, cur)
	env.Count = len(items) - dropped
	env.Dropped = dropped
	out := make([][]byte, 0, len(groups))
	for i, g := range groups {
		env.Part, env.Parts = i+1, len(groups)
		env.Items = g
		if env.Items == nil {
			env.Items = []json.RawMessage{}
		}
		b, err := json.Marshal(env)
		if err != nil {
			return nil, 0, err
		}
		if len(b) > limit {
			return nil, 0, fmt.Errorf("snapshot part %d is %d bytes, over %d", i+1, len(b), limit)
		}
		out = append(out, b)
	}
	return out, dropped, nil
}

// partKey is the key-value key of a snapshot part: "<server_id>.<kind>"
// for the first, "<server_id>.<kind>.<n>" for the n-th (n ≥ 2).
func partKey(serverID, kind string, part int) string {
	if part <= 1 {
		return serverID + "." + kind
	}
	return serverID + "." + kind + "." + strconv.Itoa(part)
}

// ClaimKey is the key-value key of a server_id's claim.
func ClaimKey(serverID string) string { return serverID + ".claim" }

// ReadLatest reads a server's latest snapshot of kind from the state
// bucket: part 1 under "<server_id>.<kind>", the others under
// "<server_id>.<kind>.<n>", all of one snapshot_id. A part of another
// snapshot means a newer one is being written: it reads again (a few
// times).
func ReadLatest(ctx context.Context, kv jetstream.KeyValue, serverID, kind string) (Snapshot, error) {
	var last error
	for range 5 {
		e, err := kv.Get(ctx, partKey(serverID, kind, 1))
		if err != nil {
			return Snapshot{}, fmt.Errorf("read %s: %w", partKey(serverID, kind, 1), err)
		}
		var head Snapshot
		if err := json.Unmarshal(e.Value(), &head); err != nil {
			return Snapshot{}, fmt.Errorf("read %s: %w", partKey(serverID, kind, 1), err)
		}
		all := head
		ok := true
		for p := 2; p <= head.Parts; p++ {
			e, err := kv.Get(ctx, partKey(serverID, kind, p))
			if err != nil {
				return Snapshot{}, fmt.Errorf("read %s: %w", partKey(serverID, kind, p), err)
			}
			var part Snapshot
			if err := json.Unmarshal(e.Value(), &part); err != nil {
				return Snapshot{}, fmt.Errorf("read %s: %w", partKey(serverID, kind, p), err)
			}
			if part.SnapshotID != head.SnapshotID || part.Part != p {
				ok = false
				last = fmt.Errorf("%s holds part %d of snapshot %s, not part %d of %s", partKey(serverID, kind, p), part.Part, part.SnapshotID, p, head.SnapshotID)
				break
			}
			all.Items = append(all.Items, part.Items...)
		}
		if ok {
			all.Part = 0
			return all, nil
		}
	}
	return Snapshot{}, last
}
