package ledger

import (
	"github.com/valyala/fastjson"
)

// The walks of the event's objects, member by member (parseWire): each
// known name once, unknown ones checked and ignored, as jsonv2 does.

// The wire types' members, each with its bit for names.
func (d *walker) event(v *fastjson.Value, w *wire) {
	const at = ""
	o, _ := v.Object()
	var s names
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		switch string(k) {
		case "v":
			if d.known(&s, 0, k, "") {
				d.intPtr(v, &w.V, at, k)
			}
		case "event_id":
			if d.known(&s, 1, k, "") {
				d.str(v, &w.EventID, at, k)
			}
		case "server_id":
			if d.known(&s, 2, k, "") {
				d.str(v, &w.ServerID, at, k)
			}
		case "spool_id":
			if d.known(&s, 3, k, "") {
				d.str(v, &w.SpoolID, at, k)
			}
		case "seq":
			if d.known(&s, 4, k, "") {
				d.u64(v, &w.Seq, at, k)
			}
		case "type":
			if d.known(&s, 5, k, "") {
				d.str(v, &w.Type, at, k)
			}
		case "time":
			if d.known(&s, 6, k, "") {
				d.str(v, &w.Time, at, k)
			}
		case "session_uid":
			if d.known(&s, 7, k, "") {
				d.str(v, &w.SessionUID, at, k)
			}
		case "session":
			if d.known(&s, 8, k, "") {
				d.session(v, &w.Session)
			}
		case "stats":
			if d.known(&s, 9, k, "") {
				d.stats(v, &w.Stats)
			}
		case "admitted":
			if d.known(&s, 10, k, "") {
				d.boolPtr(v, &w.Admitted, at, k)
			}
		case "refusal":
			if d.known(&s, 11, k, "") {
				d.str(v, &w.Refusal, at, k)
			}
		case "accounting":
			if d.known(&s, 12, k, "") {
				d.accounting(v, &w.Accounting)
			}
		case "reconcile":
			if d.known(&s, 13, k, "") {
				d.reconcile(v, &w.Reconcile)
			}
		case "overflow":
			if d.known(&s, 14, k, "") {
				d.notice(v, &w.Overflow, "/overflow", "overflow")
			}
		case "quarantine":
			if d.known(&s, 15, k, "") {
				d.notice(v, &w.Quarantine, "/quarantine", "quarantine")
			}
		case "audit":
			if d.known(&s, 16, k, "") {
				d.audit(v, &w.Audit)
			}
		default:
			d.other(&s, k, v, "")
		}
	})
}

func (d *walker) session(v *fastjson.Value, dst **EventSession) {
	const at = "/session"
	o := d.object(v, at)
	if o == nil {
		*dst = nil
		return
	}
	x := new(EventSession)
	*dst = x
	var s names
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		switch string(k) {
		case "id":
			if d.known(&s, 0, k, at) {
				d.i64(v, &x.ID, at, k)
			}
		case "username":
			if d.known(&s, 1, k, at) {
				d.str(v, &x.Username, at, k)
			}
		case "groupname":
			if d.known(&s, 2, k, at) {
				d.str(v, &x.Groupname, at, k)
			}
		case "vhost":
			if d.known(&s, 3, k, at) {
				d.str(v, &x.VHost, at, k)
			}
		case "device":
			if d.known(&s, 4, k, at) {
				d.str(v, &x.Device, at, k)
			}
		case "ip_real":
			if d.known(&s, 5, k, at) {
				d.str(v, &x.IPReal, at, k)
			}
		case "ip_real_local":
			if d.known(&s, 6, k, at) {
				d.str(v, &x.IPRealLocal, at, k)
			}
		case "ip_local":
			if d.known(&s, 7, k, at) {
				d.str(v, &x.IPLocal, at, k)
			}
		case "ip_remote":
			if d.known(&s, 8, k, at) {
				d.str(v, &x.IPRemote, at, k)
			}
		case "ipv6_local":
			if d.known(&s, 9, k, at) {
				d.str(v, &x.IPv6Local, at, k)
			}
		case "ipv6_remote":
			if d.known(&s, 10, k, at) {
				d.str(v, &x.IPv6Remote, at, k)
			}
		case "hostname":
			if d.known(&s, 11, k, at) {
				d.str(v, &x.Hostname, at, k)
			}
		case "user_agent":
			if d.known(&s, 12, k, at) {
				d.str(v, &x.UserAgent, at, k)
			}
		case "device_type":
			if d.known(&s, 13, k, at) {
				d.str(v, &x.DeviceType, at, k)
			}
		case "device_platform":
			if d.known(&s, 14, k, at) {
				d.str(v, &x.DevicePlatform, at, k)
			}
		default:
			d.other(&s, k, v, at)
		}
	})
}

func (d *walker) stats(v *fastjson.Value, dst **wireStats) {
	const at = "/stats"
	o := d.object(v, at)
	if o == nil {
		*dst = nil
		return
	}
	x := new(wireStats)
	*dst = x
	var s names
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		switch string(k) {
		case "bytes_in":
			if d.known(&s, 0, k, at) {
				d.u64Ptr(v, &x.BytesIn, at, k)
			}
		case "bytes_out":
			if d.known(&s, 1, k, at) {
				d.u64Ptr(v, &x.BytesOut, at, k)
			}
		case "duration_s":
			if d.known(&s, 2, k, at) {
				d.u64Ptr(v, &x.DurationS, at, k)
			}
		default:
			d.other(&s, k, v, at)
		}
	})
}

func (d *walker) accounting(v *fastjson.Value, dst **wireAccounting) {
	const at = "/accounting"
	o := d.object(v, at)
	if o == nil {
		*dst = nil
		return
	}
	x := new(wireAccounting)
	*dst = x
	var s names
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		switch string(k) {
		case "slot":
			if d.known(&s, 0, k, at) {
				d.i64Ptr(v, &x.Slot, at, k)
			}
		case "session_id":
			if d.known(&s, 1, k, at) {
				d.str(v, &x.SessionID, at, k)
			}
		case "logical_session_uid":
			if d.known(&s, 2, k, at) {
				d.str(v, &x.LogicalSessionUID, at, k)
			}
		case "bytes_in":
			if d.known(&s, 3, k, at) {
				d.u64(v, &x.BytesIn, at, k)
			}
		case "bytes_out":
			if d.known(&s, 4, k, at) {
				d.u64(v, &x.BytesOut, at, k)
			}
		case "delta_in":
			if d.known(&s, 5, k, at) {
				d.u64(v, &x.DeltaIn, at, k)
			}
		case "delta_out":
			if d.known(&s, 6, k, at) {
				d.u64(v, &x.DeltaOut, at, k)
			}
		case "counter_reset":
			if d.known(&s, 7, k, at) {
				d.boolean(v, &x.CounterReset, at, k)
			}
		case "connected_at":
			if d.known(&s, 8, k, at) {
				d.str(v, &x.ConnectedAt, at, k)
			}
		case "connected_at_coarse":
			if d.known(&s, 9, k, at) {
				d.boolean(v, &x.ConnectedAtCoarse, at, k)
			}
		case "duration_s":
			if d.known(&s, 10, k, at) {
				d.u64(v, &x.DurationS, at, k)
			}
		case "observed_at":
			if d.known(&s, 11, k, at) {
				d.str(v, &x.ObservedAt, at, k)
			}
		default:
			d.other(&s, k, v, at)
		}
	})
}

func (d *walker) reconcile(v *fastjson.Value, dst **wireReconcile) {
	const at = "/reconcile"
	o := d.object(v, at)
	if o == nil {
		*dst = nil
		return
	}
	x := new(wireReconcile)
	*dst = x
	var s names
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		switch string(k) {
		case "action":
			if d.known(&s, 0, k, at) {
				d.str(v, &x.Action, at, k)
			}
		case "reason":
			if d.known(&s, 1, k, at) {
				d.str(v, &x.Reason, at, k)
			}
		case "session_id":
			if d.known(&s, 2, k, at) {
				d.str(v, &x.SessionID, at, k)
			}
		case "logical_session_uid":
			if d.known(&s, 3, k, at) {
				d.str(v, &x.LogicalSessionUID, at, k)
			}
		case "joined_session_uids":
			if d.known(&s, 4, k, at) {
				d.stringList(v, &x.JoinedSessionUIDs, at, k)
			}
		case "connected_at":
			if d.known(&s, 5, k, at) {
				d.str(v, &x.ConnectedAt, at, k)
			}
		case "connected_at_coarse":
			if d.known(&s, 6, k, at) {
				d.boolean(v, &x.ConnectedAtCoarse, at, k)
			}
		case "last_seen":
			if d.known(&s, 7, k, at) {
				d.str(v, &x.LastSeen, at, k)
			}
		case "bytes_in":
			if d.known(&s, 8, k, at) {
				d.u64Ptr(v, &x.BytesIn, at, k)
			}
		case "bytes_out":
			if d.known(&s, 9, k, at) {
				d.u64Ptr(v, &x.BytesOut, at, k)
			}
		case "observed_at":
			if d.known(&s, 10, k, at) {
				d.str(v, &x.ObservedAt, at, k)
			}
		default:
			d.other(&s, k, v, at)
		}
	})
}

// notice: overflow's and quarantine's payload (name is the member's,
// at its path).
func (d *walker) notice(v *fastjson.Value, dst **wireNotice, at, name string) {
	o := d.object(v, at)
	if o == nil {
		*dst = nil
		return
	}
	x := new(wireNotice)
	*dst = x
	var s names
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		switch string(k) {
		case "reason":
			if d.known(&s, 0, k, at) {
				d.str(v, &x.Reason, at, k)
			}
		case "events":
			if d.known(&s, 1, k, at) {
				d.i64(v, &x.Events, at, k)
			}
		case "bytes":
			if d.known(&s, 2, k, at) {
				d.i64(v, &x.Bytes, at, k)
			}
		case "seq_ranges":
			if d.known(&s, 3, k, at) {
				d.raw(v, &x.SeqRanges, at, k, name, "seq_ranges")
			}
		default:
			d.other(&s, k, v, at)
		}
	})
}

func (d *walker) audit(v *fastjson.Value, dst **wireAudit) {
	const at = "/audit"
	o := d.object(v, at)
	if o == nil {
		*dst = nil
		return
	}
	x := new(wireAudit)
	*dst = x
	var s names
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		switch string(k) {
		case "phase":
			if d.known(&s, 0, k, at) {
				d.str(v, &x.Phase, at, k)
			}
		case "action":
			if d.known(&s, 1, k, at) {
				d.str(v, &x.Action, at, k)
			}
		case "subject":
			if d.known(&s, 2, k, at) {
				d.str(v, &x.Subject, at, k)
			}
		case "key":
			if d.known(&s, 3, k, at) {
				d.str(v, &x.Key, at, k)
			}
		case "key_name":
			if d.known(&s, 4, k, at) {
				d.str(v, &x.KeyName, at, k)
			}
		case "role":
			if d.known(&s, 5, k, at) {
				d.str(v, &x.Role, at, k)
			}
		case "args":
			if d.known(&s, 6, k, at) {
				d.stringMap(v, &x.Args, at, k)
			}
		case "ok":
			if d.known(&s, 7, k, at) {
				d.boolean(v, &x.OK, at, k)
			}
		case "code":
			if d.known(&s, 8, k, at) {
				d.str(v, &x.Code, at, k)
			}
		case "message":
			if d.known(&s, 9, k, at) {
				d.str(v, &x.Message, at, k)
			}
		case "elapsed_ms":
			if d.known(&s, 10, k, at) {
				d.i64(v, &x.ElapsedMS, at, k)
			}
		case "suppressed_refusals":
			if d.known(&s, 11, k, at) {
				d.i64(v, &x.Suppressed, at, k)
			}
		case "actor":
			if d.known(&s, 12, k, at) {
				d.str(v, &x.Actor, at, k)
			}
		default:
			d.other(&s, k, v, at)
		}
	})
}
