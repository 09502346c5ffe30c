package testbed

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// OcctlUser is the part of one `occtl -j show users` / `show id` entry the
// tests compare events against.
type OcctlUser struct {
	ID        int
	Username  string
	Groupname string // "(none)" is turned into ""
	Device    string
	RemoteIP  string // the client's real address
	IPv4      string // the tunnel address
	IPv6      string
	RX, TX    uint64 // bytes received from / sent to the client
}

// occtl prints numbers either as numbers or as strings depending on the
// field and version; this accepts both.
func jsonUint(v any) (uint64, error) {
	switch x := v.(type) {
	case float64:
		return uint64(x), nil
	case string:
		return strconv.ParseUint(strings.TrimSpace(x), 10, 64)
	case nil:
		return 0, fmt.Errorf("missing")
	default:
		return 0, fmt.Errorf("unexpected %T", v)
	}
}

func jsonString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return ""
	}
}

// parseOcctlUsers decodes `show users` or `show id` output (a JSON array
// of objects in 1.1.6, valid for these two commands; see
// reference/occtl-1.1.6-json).
func parseOcctlUsers(out []byte) ([]OcctlUser, error) {
	var raw []map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("occtl output is not the expected JSON array: %w\n%s", err, out)
	}
	users := make([]OcctlUser, 0, len(raw))
	for _, m := range raw {
		id, err := jsonUint(m["ID"])
		if err != nil {
			return nil, fmt.Errorf("occtl entry without a numeric ID (%v): %v", err, m)
		}
		u := OcctlUser{
			ID:        int(id),
			Username:  jsonString(m["Username"]),
			Groupname: jsonString(m["Groupname"]),
			Device:    jsonString(m["Device"]),
			RemoteIP:  jsonString(m["Remote IP"]),
			IPv4:      jsonString(m["IPv4"]),
			IPv6:      jsonString(m["IPv6"]),
		}
		if u.Groupname == "(none)" {
			u.Groupname = ""
		}
		if u.RX, err = jsonUint(m["RX"]); err != nil {
			return nil, fmt.Errorf("occtl entry %d: RX: %v", u.ID, err)
		}
		if u.TX, err = jsonUint(m["TX"]); err != nil {
			return nil, fmt.Errorf("occtl entry %d: TX: %v", u.ID, err)
		}
		users = append(users, u)
	}
	return users, nil
}

// OcctlUsers returns `occtl -j show users`.
func (b *Bed) OcctlUsers() ([]OcctlUser, error) {
	out, err := b.Occtl("show", "users")
	if err != nil {
		return nil, err
	}
	return parseOcctlUsers(out)
}

// OcctlID returns `occtl -j show id ID`.
func (b *Bed) OcctlID(id int) (OcctlUser, error) {
	out, err := b.Occtl("show", "id", strconv.Itoa(id))
	if err != nil {
		return OcctlUser{}, err
	}
	us, err := parseOcctlUsers(out)
	if err != nil {
		return OcctlUser{}, err
	}
	if len(us) != 1 || us[0].ID != id {
		return OcctlUser{}, fmt.Errorf("occtl show id %d: %d entries: %s", id, len(us), out)
	}
	return us[0], nil
}

// QuietCounters reads a session's counters until two readings interval
// apart agree (no traffic in flight), at most within d, and returns the
// last reading. Tests take it right before a disconnect to compare with
// the disconnect event's stats.
func (b *Bed) QuietCounters(id int, interval, d time.Duration) (OcctlUser, error) {
	deadline := time.Now().Add(d)
	prev, err := b.OcctlID(id)
	if err != nil {
		return prev, err
	}
	for {
		time.Sleep(interval)
		cur, err := b.OcctlID(id)
		if err != nil {
			return cur, err
		}
		if cur.RX == prev.RX && cur.TX == prev.TX {
			return cur, nil
		}
		if time.Now().After(deadline) {
			return cur, fmt.Errorf("occtl counters of %d still moving after %s (%d/%d → %d/%d)", id, d, prev.RX, prev.TX, cur.RX, cur.TX)
		}
		prev = cur
	}
}

// OcctlBannedIPs returns the addresses `occtl -j show ip bans` lists (an
// array of objects with an "IP" field, valid JSON on 1.1.6 for this
// command).
func (b *Bed) OcctlBannedIPs() ([]string, error) {
	out, err := b.Occtl("show", "ip", "bans")
	if err != nil {
		return nil, err
	}
	return parseOcctlBans(out)
}

func parseOcctlBans(out []byte) ([]string, error) {
	var raw []map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("occtl show ip bans is not the expected JSON array: %w\n%s", err, out)
	}
	var ips []string
	for _, m := range raw {
		ips = append(ips, jsonString(m["IP"]))
	}
	return ips, nil
}
