package ledger

import (
	"github.com/valyala/fastjson"
)

// The walks of the event's objects (parseWire): each wire type's members
// in a table, each known name taken once (its index in the table is its
// bit in names), unknown ones checked and ignored, as jsonv2 does.

// member is one member of the wire type T: its name and what fills x
// from its value (at: the object's path, k: the name, for errors).
type member[T any] struct {
	name string
	fill func(d *walker, v *fastjson.Value, x *T, at string, k []byte)
}

// walk fills x from o's members by ms. The producers write the members
// in the tables' order, so the look-up starts after the last one found.
func walk[T any](d *walker, o *fastjson.Object, x *T, at string, ms []member[T]) {
	var s names
	next := 0
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		for j := range ms {
			i := (next + j) % len(ms)
			if ms[i].name == string(k) {
				if d.known(&s, uint(i), k, at) {
					ms[i].fill(d, v, x, at, k)
				}
				next = i + 1
				return
			}
		}
		d.other(&s, k, v, at)
	})
}

// walkPtr is walk of a member that may be null (dst nil) or an object (a
// new T at dst).
func walkPtr[T any](d *walker, v *fastjson.Value, dst **T, at string, ms []member[T]) {
	o := d.object(v, at)
	if o == nil {
		*dst = nil
		return
	}
	x := new(T)
	*dst = x
	walk(d, o, x, at, ms)
}

// The members' kinds: name and the field they fill.

func strM[T any](name string, f func(*T) *string) member[T] {
	return member[T]{name, func(d *walker, v *fastjson.Value, x *T, at string, k []byte) { d.str(v, f(x), at, k) }}
}

func boolM[T any](name string, f func(*T) *bool) member[T] {
	return member[T]{name, func(d *walker, v *fastjson.Value, x *T, at string, k []byte) { d.boolean(v, f(x), at, k) }}
}

func u64M[T any](name string, f func(*T) *uint64) member[T] {
	return member[T]{name, func(d *walker, v *fastjson.Value, x *T, at string, k []byte) { d.u64(v, f(x), at, k) }}
}

func u64PtrM[T any](name string, f func(*T) **uint64) member[T] {
	return member[T]{name, func(d *walker, v *fastjson.Value, x *T, at string, k []byte) { d.u64Ptr(v, f(x), at, k) }}
}

func i64M[T any](name string, f func(*T) *int64) member[T] {
	return member[T]{name, func(d *walker, v *fastjson.Value, x *T, at string, k []byte) { d.i64(v, f(x), at, k) }}
}

// objM is a member holding an object of the wire type U, at path.
func objM[T, U any](name, path string, ms *[]member[U], f func(*T) **U) member[T] {
	return member[T]{name, func(d *walker, v *fastjson.Value, x *T, _ string, _ []byte) { walkPtr(d, v, f(x), path, *ms) }}
}

var eventMembers = []member[wire]{
	{"v", func(d *walker, v *fastjson.Value, w *wire, at string, k []byte) { d.intPtr(v, &w.V, at, k) }},
	strM("event_id", func(w *wire) *string { return &w.EventID }),
	strM("server_id", func(w *wire) *string { return &w.ServerID }),
	strM("spool_id", func(w *wire) *string { return &w.SpoolID }),
	u64M("seq", func(w *wire) *uint64 { return &w.Seq }),
	strM("type", func(w *wire) *string { return &w.Type }),
	strM("time", func(w *wire) *string { return &w.Time }),
	strM("session_uid", func(w *wire) *string { return &w.SessionUID }),
	objM("session", "/session", &sessionMembers, func(w *wire) **EventSession { return &w.Session }),
	objM("stats", "/stats", &statsMembers, func(w *wire) **wireStats { return &w.Stats }),
	{"admitted", func(d *walker, v *fastjson.Value, w *wire, at string, k []byte) { d.boolPtr(v, &w.Admitted, at, k) }},
	strM("refusal", func(w *wire) *string { return &w.Refusal }),
	objM("accounting", "/accounting", &accountingMembers, func(w *wire) **wireAccounting { return &w.Accounting }),
	objM("reconcile", "/reconcile", &reconcileMembers, func(w *wire) **wireReconcile { return &w.Reconcile }),
	objM("overflow", "/overflow", &overflowMembers, func(w *wire) **wireNotice { return &w.Overflow }),
	objM("quarantine", "/quarantine", &quarantineMembers, func(w *wire) **wireNotice { return &w.Quarantine }),
	objM("audit", "/audit", &auditMembers, func(w *wire) **wireAudit { return &w.Audit }),
}

var sessionMembers = []member[EventSession]{
	i64M("id", func(x *EventSession) *int64 { return &x.ID }),
	strM("username", func(x *EventSession) *string { return &x.Username }),
	strM("groupname", func(x *EventSession) *string { return &x.Groupname }),
	strM("vhost", func(x *EventSession) *string { return &x.VHost }),
	strM("device", func(x *EventSession) *string { return &x.Device }),
	strM("ip_real", func(x *EventSession) *string { return &x.IPReal }),
	strM("ip_real_local", func(x *EventSession) *string { return &x.IPRealLocal }),
	strM("ip_local", func(x *EventSession) *string { return &x.IPLocal }),
	strM("ip_remote", func(x *EventSession) *string { return &x.IPRemote }),
	strM("ipv6_local", func(x *EventSession) *string { return &x.IPv6Local }),
	strM("ipv6_remote", func(x *EventSession) *string { return &x.IPv6Remote }),
	strM("hostname", func(x *EventSession) *string { return &x.Hostname }),
	strM("user_agent", func(x *EventSession) *string { return &x.UserAgent }),
	strM("device_type", func(x *EventSession) *string { return &x.DeviceType }),
	strM("device_platform", func(x *EventSession) *string { return &x.DevicePlatform }),
}

var statsMembers = []member[wireStats]{
	u64PtrM("bytes_in", func(x *wireStats) **uint64 { return &x.BytesIn }),
	u64PtrM("bytes_out", func(x *wireStats) **uint64 { return &x.BytesOut }),
	u64PtrM("duration_s", func(x *wireStats) **uint64 { return &x.DurationS }),
}

var accountingMembers = []member[wireAccounting]{
	{"slot", func(d *walker, v *fastjson.Value, x *wireAccounting, at string, k []byte) {
		d.i64Ptr(v, &x.Slot, at, k)
	}},
	strM("session_id", func(x *wireAccounting) *string { return &x.SessionID }),
	strM("logical_session_uid", func(x *wireAccounting) *string { return &x.LogicalSessionUID }),
	u64M("bytes_in", func(x *wireAccounting) *uint64 { return &x.BytesIn }),
	u64M("bytes_out", func(x *wireAccounting) *uint64 { return &x.BytesOut }),
	u64M("delta_in", func(x *wireAccounting) *uint64 { return &x.DeltaIn }),
	u64M("delta_out", func(x *wireAccounting) *uint64 { return &x.DeltaOut }),
	boolM("counter_reset", func(x *wireAccounting) *bool { return &x.CounterReset }),
	strM("connected_at", func(x *wireAccounting) *string { return &x.ConnectedAt }),
	boolM("connected_at_coarse", func(x *wireAccounting) *bool { return &x.ConnectedAtCoarse }),
	u64M("duration_s", func(x *wireAccounting) *uint64 { return &x.DurationS }),
	strM("observed_at", func(x *wireAccounting) *string { return &x.ObservedAt }),
}

var reconcileMembers = []member[wireReconcile]{
	strM("action", func(x *wireReconcile) *string { return &x.Action }),
	strM("reason", func(x *wireReconcile) *string { return &x.Reason }),
	strM("session_id", func(x *wireReconcile) *string { return &x.SessionID }),
	strM("logical_session_uid", func(x *wireReconcile) *string { return &x.LogicalSessionUID }),
	{"joined_session_uids", func(d *walker, v *fastjson.Value, x *wireReconcile, at string, k []byte) {
		d.stringList(v, &x.JoinedSessionUIDs, at, k)
	}},
	strM("connected_at", func(x *wireReconcile) *string { return &x.ConnectedAt }),
	boolM("connected_at_coarse", func(x *wireReconcile) *bool { return &x.ConnectedAtCoarse }),
	strM("last_seen", func(x *wireReconcile) *string { return &x.LastSeen }),
	u64PtrM("bytes_in", func(x *wireReconcile) **uint64 { return &x.BytesIn }),
	u64PtrM("bytes_out", func(x *wireReconcile) **uint64 { return &x.BytesOut }),
	strM("observed_at", func(x *wireReconcile) *string { return &x.ObservedAt }),
}

// The payloads of overflow and quarantine (name: the event's member
// holding it, where raw finds seq_ranges' text).
var overflowMembers, quarantineMembers = noticeMembers("overflow"), noticeMembers("quarantine")

func noticeMembers(name string) []member[wireNotice] {
	return []member[wireNotice]{
		strM("reason", func(x *wireNotice) *string { return &x.Reason }),
		i64M("events", func(x *wireNotice) *int64 { return &x.Events }),
		i64M("bytes", func(x *wireNotice) *int64 { return &x.Bytes }),
		{"seq_ranges", func(d *walker, v *fastjson.Value, x *wireNotice, at string, k []byte) {
			d.raw(v, &x.SeqRanges, at, k, name, "seq_ranges")
		}},
	}
}

var auditMembers = []member[wireAudit]{
	strM("phase", func(x *wireAudit) *string { return &x.Phase }),
	strM("action", func(x *wireAudit) *string { return &x.Action }),
	strM("subject", func(x *wireAudit) *string { return &x.Subject }),
	strM("key", func(x *wireAudit) *string { return &x.Key }),
	strM("key_name", func(x *wireAudit) *string { return &x.KeyName }),
	strM("role", func(x *wireAudit) *string { return &x.Role }),
	{"args", func(d *walker, v *fastjson.Value, x *wireAudit, at string, k []byte) { d.stringMap(v, &x.Args, at, k) }},
	boolM("ok", func(x *wireAudit) *bool { return &x.OK }),
	strM("code", func(x *wireAudit) *string { return &x.Code }),
	strM("message", func(x *wireAudit) *string { return &x.Message }),
	i64M("elapsed_ms", func(x *wireAudit) *int64 { return &x.ElapsedMS }),
	i64M("suppressed_refusals", func(x *wireAudit) *int64 { return &x.Suppressed }),
	strM("actor", func(x *wireAudit) *string { return &x.Actor }),
}
