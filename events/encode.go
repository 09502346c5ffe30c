package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Marshal encodes e as one NDJSON line, newline included, byte for byte as
// encoding/json would with HTML escaping off: invalid UTF-8 becomes U+FFFD,
// control characters, U+2028 and U+2029 are escaped, so a hostile value can
// never break the line.
//
// Events the hook writes take a hand-written path: encoding/json builds its
// reflection caches on first use, and the hook is a new process every time,
// so that cost (about a tenth of the hook's run) would be paid on every
// login. FuzzMarshalMatchesEncodingJSON holds the two paths to the same
// bytes. Events with a derived payload (written by the shipper, a
// long-running process) use encoding/json.
func (e *Event) Marshal() ([]byte, error) {
	if e.Accounting != nil || e.Reconcile != nil || e.Overflow != nil || e.Quarantine != nil || e.Audit != nil {
		return e.marshalReflect()
	}
	return e.appendJSON(make([]byte, 0, 1536)), nil
}

func (e *Event) marshalReflect() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode %s event: %w", e.Type, err)
	}
	return buf.Bytes(), nil
}

// obj writes a JSON object's fields in order, commas included.
type obj struct {
	b     []byte
	first bool
}

func open(b []byte) obj { return obj{b: append(b, '{'), first: true} }

func (o *obj) key(k string) {
	if !o.first {
		o.b = append(o.b, ',')
	}
	o.first = false
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *obj) str(k, v string) { o.key(k); o.b = appendString(o.b, v) }

func (o *obj) strOmit(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}

func (o *obj) uint(k string, v uint64) { o.key(k); o.b = strconv.AppendUint(o.b, v, 10) }

func (o *obj) int(k string, v int64) { o.key(k); o.b = strconv.AppendInt(o.b, v, 10) }

func (o *obj) boolean(k string, v bool) { o.key(k); o.b = strconv.AppendBool(o.b, v) }

func (o *obj) strs(k string, vs []string) {
	o.key(k)
	if vs == nil {
		o.b = append(o.b, "null"...)
		return
	}
	o.b = append(o.b, '[')
	for i, v := range vs {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendString(o.b, v)
	}
	o.b = append(o.b, ']')
}

func (o *obj) close() []byte { return append(o.b, '}') }

// appendJSON follows the field order and omitempty rules of the struct tags.
func (e *Event) appendJSON(b []byte) []byte {
	o := open(b)
	o.int("v", int64(e.V))
	o.str("event_id", e.EventID)
	o.str("server_id", e.ServerID)
	o.strOmit("spool_id", e.SpoolID)
	if e.Seq != 0 {
		o.uint("seq", e.Seq)
	}
	o.str("type", string(e.Type))
	o.str("time", e.Time)
	o.strOmit("boot_id", e.BootID)
	if e.MonoNS != 0 {
		o.int("mono_ns", e.MonoNS)
	}
	o.strOmit("session_uid", e.SessionUID)
	if s := e.Session; s != nil {
		o.key("session")
		o.b = s.appendJSON(o.b)
	}
	if s := e.Stats; s != nil {
		o.key("stats")
		so := open(o.b)
		so.uint("bytes_in", s.BytesIn)
		so.uint("bytes_out", s.BytesOut)
		if s.DurationS != nil {
			so.uint("duration_s", *s.DurationS)
		}
		o.b = so.close()
	}
	if p := e.Policy; p != nil {
		o.key("policy")
		o.b = p.appendJSON(o.b)
	}
	if f := e.Firewall; f != nil {
		o.key("firewall")
		fo := open(o.b)
		fo.str("mode", f.Mode)
		fo.strOmit("action", f.Action)
		fo.strOmit("backend", f.Backend)
		fo.strOmit("error", f.Error)
		if f.Micros != 0 {
			fo.int("elapsed_us", f.Micros)
		}
		if r := f.SupersededBy; r != nil {
			fo.key("superseded_by")
			ro := open(fo.b)
			ro.int("id", int64(r.ID))
			ro.strOmit("session_uid", r.SessionUID)
			fo.b = ro.close()
		}
		o.b = fo.close()
	}
	if e.Admitted != nil {
		o.boolean("admitted", *e.Admitted)
	}
	o.strOmit("refusal", e.Refusal)
	if v := e.Verdict; v != nil {
		o.key("verdict")
		vo := open(o.b)
		vo.str("mirror", v.Mirror)
		if v.AgeMS != 0 {
			vo.int("age_ms", v.AgeMS)
		}
		vo.strOmit("stale_mode", v.StaleMode)
		vo.boolean("allowed", v.Allowed)
		vo.strOmit("reason", v.Reason)
		vo.strOmit("until", v.Until)
		vo.strOmit("error", v.Error)
		o.b = vo.close()
	}
	if h := e.Hook; h != nil {
		o.key("hook")
		ho := open(o.b)
		ho.strOmit("version", h.Version)
		if h.Fallback {
			ho.boolean("fallback", true)
		}
		if h.LockWaitUS != 0 {
			ho.int("lock_wait_us", h.LockWaitUS)
		}
		if h.ElapsedUS != 0 {
			ho.int("elapsed_us", h.ElapsedUS)
		}
		if h.Chained != nil {
			ho.int("next_script_status", int64(*h.Chained))
		}
		o.b = ho.close()
	}
	if len(e.Truncated) > 0 {
		o.strs("truncated", e.Truncated)
	}
	if len(e.Problems) > 0 {
		o.strs("problems", e.Problems)
	}
	return append(o.close(), '\n')
}

func (s *Session) appendJSON(b []byte) []byte {
	o := open(b)
	if s.ID != 0 {
		o.int("id", int64(s.ID))
	}
	o.strOmit("username", s.Username)
	o.strOmit("groupname", s.Groupname)
	o.strOmit("vhost", s.VHost)
	o.strOmit("device", s.Device)
	o.strOmit("ip_real", s.IPReal)
	o.strOmit("ip_real_local", s.IPRealLocal)
	o.strOmit("ip_local", s.IPLocal)
	o.strOmit("ip_remote", s.IPRemote)
	o.strOmit("ipv6_local", s.IPv6Local)
	o.strOmit("ipv6_remote", s.IPv6Remote)
	if s.IPv6Prefix != nil {
		o.int("ipv6_prefix", int64(*s.IPv6Prefix))
	}
	o.strOmit("hostname", s.Hostname)
	o.strOmit("remote_hostname", s.RemoteHostname)
	o.strOmit("user_agent", s.UserAgent)
	o.strOmit("device_type", s.DeviceType)
	o.strOmit("device_platform", s.DevicePlatform)
	return o.close()
}

func (p *Policy) appendJSON(b []byte) []byte {
	o := open(b)
	o.strs("routes", p.Routes)
	o.strs("no_routes", p.NoRoutes)
	o.strs("dns", p.DNS)
	o.boolean("restrict_to_routes", p.RestrictToRoutes)
	ports := func(k string, ps []Port) {
		if len(ps) == 0 {
			return
		}
		o.key(k)
		o.b = append(o.b, '[')
		for i, pt := range ps {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			po := open(o.b)
			po.str("proto", pt.Proto)
			if pt.Port != 0 {
				po.int("port", int64(pt.Port))
			}
			o.b = po.close()
		}
		o.b = append(o.b, ']')
	}
	ports("allow_ports", p.AllowPorts)
	ports("deny_ports", p.DenyPorts)
	if p.Invalid {
		o.boolean("invalid", true)
	}
	if p.ListsOmitted {
		o.boolean("lists_omitted", true)
	}
	return o.close()
}

const hex = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping off.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 end a line in JavaScript; escape them as
		// encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
