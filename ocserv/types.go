package ocserv

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// User is one entry of show users, show user NAME and show id ID: one
// connected (or connecting) worker. Field names follow occtl's keys.
type User struct {
	ID        int    // "ID": the worker's PID, the script's ID; reused over time
	Username  string // "(none)" (a session still authenticating) becomes ""
	Groupname string // "(none)" becomes ""
	State     string // "connected", "pre-auth", …
	VHost     string // "vhost"
	Device    string // tun device, e.g. "vpns0"
	MTU       int
	Location  string

	RemoteIP      netip.Addr // "Remote IP": the client's real address
	LocalDeviceIP netip.Addr // "Local Device IP": the server address it reached
	IPv4          netip.Addr // the client's tunnel address
	PTPIPv4       netip.Addr // the server's end of the tunnel
	IPv6          netip.Addr
	PTPIPv6       netip.Addr

	UserAgent string
	Hostname  string

	// RX and TX are bytes received from and sent to the client.
	// HasCounters is false when occtl printed none (a session still
	// authenticating) or they did not convert (see the notes).
	RX, TX      uint64
	HasCounters bool
	// LimitRX and LimitTX are the rate limits as occtl prints them
	// ("1.0 KB/sec"), "" when none. In ≤ 1.2.0 the TX limit is printed
	// under a second "TX" key before the counter; it is recovered here.
	LimitRX, LimitTX     string
	AverageRX, AverageTX string // human text, e.g. "40 bytes/sec"

	DPD       time.Duration // dead peer detection interval
	KeepAlive time.Duration

	// ConnectedAt is raw_connected_at (≥ 1.2.3, exact to the second) when
	// present; otherwise "Connected at", which is local time to the minute
	// (parsed in the Location given to the parser) and ConnectedAtCoarse is
	// true: the real time lies within the following minute.
	ConnectedAt       time.Time
	ConnectedAtCoarse bool

	Session     string // "Session": the short session id (cookie prefix)
	FullSession string // "Full session"

	TLSCiphersuite  string
	DTLSCipher      string
	CSTPCompression string
	DTLSCompression string

	DNS             []string
	NBNS            []string
	SplitDNSDomains []string
	// Routes as printed ("10.10.10.0/255.255.255.0"); DefaultRoute is set
	// (and Routes empty) when occtl prints "defaultroute".
	Routes             []string
	DefaultRoute       bool
	NoRoutes           []string
	IRoutes            []string
	RestrictedToRoutes bool
	RestrictedToPorts  []string // e.g. "tcp(443)", "!udp(53)"

	// Raw holds every member occtl printed (last duplicate wins), so
	// fields of newer versions are available before this type knows them.
	Raw map[string]any
}

// ParseUsers reads show users, show user NAME or show id ID output. loc is
// the time zone occtl printed local times in (the host's: nil means
// time.Local). An empty array is an empty, non-nil slice.
func ParseUsers(data []byte, loc *time.Location) ([]User, []Note, error) {
	if loc == nil {
		loc = time.Local
	}
	return parseEach(data, func(r record) (User, error) { return userFrom(r, loc) })
}

// parseEach reads an array of objects (occtl's usual shape) and converts
// each entry with conv; the first entry that cannot be converted fails the
// whole reading, with its offset.
func parseEach[T any](data []byte, conv func(record) (T, error)) ([]T, []Note, error) {
	var notes []Note
	root, err := parseRoot(data, &notes)
	if err != nil {
		return nil, nil, err
	}
	objs, err := entries(root, &notes)
	if err != nil {
		return nil, nil, err
	}
	out := make([]T, 0, len(objs))
	for i, o := range objs {
		v, err := conv(record{o, fmt.Sprintf("entry %d", i), &notes})
		if err != nil {
			return nil, nil, err
		}
		out = append(out, v)
	}
	return out, notes, nil
}

// requireID reads the "ID" every user entry has; without it an entry
// cannot be told apart from another, so it is an error, not a note.
func requireID(r record) (int, error) {
	v, ok := r.obj.Get("ID")
	if !ok {
		return 0, &ParseError{Offset: r.obj.Offset, Msg: r.what + ": no \"ID\""}
	}
	n, ok := intText(v.Text)
	if (v.Kind != Number && v.Kind != String) || !ok || n <= 0 || n > 1<<31-1 {
		return 0, &ParseError{Offset: v.Offset, Msg: fmt.Sprintf("%s: \"ID\" is not a positive integer (%s %q)", r.what, v.Kind, clip(v.Text))}
	}
	return int(n), nil
}

func userFrom(r record, loc *time.Location) (User, error) {
	id, err := requireID(r)
	if err != nil {
		return User{}, err
	}
	u := User{
		ID:                id,
		Username:          r.name("Username"),
		Groupname:         r.name("Groupname"),
		State:             r.str("State"),
		VHost:             r.str("vhost"),
		Device:            r.str("Device"),
		MTU:               r.small("MTU"),
		Location:          r.str("Location"),
		RemoteIP:          r.addr("Remote IP"),
		LocalDeviceIP:     r.addr("Local Device IP"),
		IPv4:              r.addr("IPv4"),
		PTPIPv4:           r.addr("P-t-P IPv4"),
		IPv6:              r.addr("IPv6"),
		PTPIPv6:           r.addr("P-t-P IPv6"),
		UserAgent:         r.str("User-Agent"),
		Hostname:          r.str("Hostname"),
		AverageRX:         r.str("Average RX"),
		AverageTX:         r.str("Average TX"),
		DPD:               r.seconds("DPD"),
		KeepAlive:         r.seconds("KeepAlive"),
		Session:           r.str("Session"),
		FullSession:       r.str("Full session"),
		TLSCiphersuite:    r.str("TLS ciphersuite"),
		DTLSCipher:        r.str("DTLS cipher"),
		CSTPCompression:   r.str("CSTP compression"),
		DTLSCompression:   r.str("DTLS compression"),
		DNS:               r.strs("DNS"),
		NBNS:              r.strs("NBNS"),
		SplitDNSDomains:   r.strs("Split-DNS-Domains"),
		NoRoutes:          r.strs("No-routes"),
		IRoutes:           r.strs("iRoutes"),
		RestrictedToPorts: r.strs("Restricted to ports"),
		LimitRX:           r.str("Limit RX"),
		LimitTX:           r.str("Limit TX"),
		Raw:               r.raw(),
	}
	u.RestrictedToRoutes, _ = r.boolean("Restricted to routes")

	routes := r.strs("Routes")
	for _, rt := range routes {
		if rt == "defaultroute" {
			u.DefaultRoute = true
			continue
		}
		u.Routes = append(u.Routes, rt)
	}

	// The duplicate TX: every "TX" before the last is the rate limit
	// ("Limit RX" … "TX" printed as a pair), the last is the counter.
	var txs []*Value
	for _, m := range r.obj.Members {
		if m.Key == "TX" {
			txs = append(txs, m.Value)
		}
	}
	if len(txs) > 1 && u.LimitTX == "" {
		u.LimitTX, _ = scalarText(txs[0])
	}
	rx, okRX := r.uint("RX")
	tx, okTX := r.uint("TX")
	if okRX && okTX {
		u.RX, u.TX, u.HasCounters = rx, tx, true
	} else if okRX != okTX {
		r.note(r.obj, "only one of RX and TX is readable; counters left out")
	}

	u.ConnectedAt, u.ConnectedAtCoarse = r.when("raw_connected_at", "Connected at", loc)
	return u, nil
}

// Status is show status: the server and its counters. Fields missing in
// a version stay zero; Raw has everything.
type Status struct {
	Status          string // "online"; "offline" when occtl cannot reach ocserv
	Online          bool
	ServerPID       int
	SecModPID       int
	SecModInstances int // "Sec-mod instance count"

	// UpSince is raw_up_since when present, else the minute-resolution
	// local "Up since" (UpSinceCoarse). Uptime is "uptime" in seconds.
	UpSince       time.Time
	UpSinceCoarse bool
	Uptime        time.Duration

	ActiveSessions       int64
	TotalSessions        int64
	TotalAuthFailures    int64
	IPsInBanList         int64
	SessionsHandled      int64
	TimedOutSessions     int64
	TimedOutIdle         int64 // "Timed out (idle) sessions"
	ClosedDueToError     int64 // "Closed due to error sessions"
	AuthFailures         int64 // since LastStatsReset
	LastStatsReset       time.Time
	LastStatsResetCoarse bool

	AvgAuthTime    time.Duration // raw_avg_auth_time
	MaxAuthTime    time.Duration
	AvgSessionTime time.Duration
	MaxSessionTime time.Duration
	// RawMedianLatency and RawStdevLatency are raw_median_latency and
	// raw_stdev_latency in occtl's own unit; the human forms are in Raw
	// ("Median latency", "STDEV latency").
	RawMedianLatency int64
	RawStdevLatency  int64
	RX, TX           uint64 // raw_rx, raw_tx: bytes since the last stats reset

	Raw map[string]any
}

// ParseStatus reads show status output (an object; an array holding one
// object is accepted too).
func ParseStatus(data []byte, loc *time.Location) (Status, []Note, error) {
	if loc == nil {
		loc = time.Local
	}
	var notes []Note
	root, err := parseRoot(data, &notes)
	if err != nil {
		return Status{}, nil, err
	}
	objs, err := entries(root, &notes)
	if err != nil {
		return Status{}, nil, err
	}
	if len(objs) != 1 {
		return Status{}, nil, &ParseError{Offset: root.Offset, Msg: fmt.Sprintf("expected one status object, found %d", len(objs))}
	}
	r := record{objs[0], "status", &notes}
	if _, ok := r.obj.Get("Status"); !ok {
		return Status{}, nil, &ParseError{Offset: r.obj.Offset, Msg: "status object without \"Status\""}
	}
	s := Status{
		Status:          r.str("Status"),
		ServerPID:       r.small("Server PID"),
		SecModPID:       r.small("Sec-mod PID"),
		SecModInstances: r.small("Sec-mod instance count"),
		Uptime:          r.seconds("uptime"),
		AvgAuthTime:     r.seconds("raw_avg_auth_time"),
		MaxAuthTime:     r.seconds("raw_max_auth_time"),
		AvgSessionTime:  r.seconds("raw_avg_session_time"),
		MaxSessionTime:  r.seconds("raw_max_session_time"),
		Raw:             r.raw(),
	}
	s.Online = strings.EqualFold(s.Status, "online")
	i64 := func(key string) int64 { n, _ := r.int(key); return n }
	s.ActiveSessions = i64("Active sessions")
	s.TotalSessions = i64("Total sessions")
	s.TotalAuthFailures = i64("Total authentication failures")
	s.IPsInBanList = i64("IPs in ban list")
	s.SessionsHandled = i64("Sessions handled")
	s.TimedOutSessions = i64("Timed out sessions")
	s.TimedOutIdle = i64("Timed out (idle) sessions")
	s.ClosedDueToError = i64("Closed due to error sessions")
	s.AuthFailures = i64("Authentication failures")
	s.RawMedianLatency = i64("raw_median_latency")
	s.RawStdevLatency = i64("raw_stdev_latency")
	s.RX, _ = r.uint("raw_rx")
	s.TX, _ = r.uint("raw_tx")
	s.UpSince, s.UpSinceCoarse = r.when("raw_up_since", "Up since", loc)
	s.LastStatsReset, s.LastStatsResetCoarse = r.when("raw_last_stats_reset", "Last stats reset", loc)
	return s, notes, nil
}

// Session is one entry of show sessions all|valid and show session SID:
// a session cookie known to sec-mod (it outlives the worker, which is why
// a disconnected client can come back without a password).
type Session struct {
	Session     string // short id
	FullSession string
	// Created is local time to the minute in 1.1.6 (CreatedCoarse); a
	// raw_created field, if a version prints one, is used instead.
	Created       time.Time
	CreatedCoarse bool
	State         string // "authenticated", …
	Username      string // "(none)" becomes ""
	Groupname     string // "(none)" becomes ""
	VHost         string
	UserAgent     string
	RemoteIP      netip.Addr
	Location      string
	SessionIsOpen bool // "session_is_open"
	TLSAuthOK     bool // "tls_auth_ok"
	InUse         bool // "in_use"

	Raw map[string]any
}

// ParseSessions reads show sessions all|valid or show session SID output.
func ParseSessions(data []byte, loc *time.Location) ([]Session, []Note, error) {
	if loc == nil {
		loc = time.Local
	}
	return parseEach(data, func(r record) (Session, error) {
		s := Session{
			Session:     r.str("Session"),
			FullSession: r.str("Full session"),
			State:       r.str("State"),
			Username:    r.name("Username"),
			Groupname:   r.name("Groupname"),
			VHost:       r.str("vhost"),
			UserAgent:   r.str("User-Agent"),
			RemoteIP:    r.addr("Remote IP"),
			Location:    r.str("Location"),
			Raw:         r.raw(),
		}
		if s.Session == "" && s.FullSession == "" {
			return s, &ParseError{Offset: r.obj.Offset, Msg: r.what + `: no "Session" or "Full session"`}
		}
		s.SessionIsOpen, _ = r.boolean("session_is_open")
		s.TLSAuthOK, _ = r.boolean("tls_auth_ok")
		s.InUse, _ = r.boolean("in_use")
		s.Created, s.CreatedCoarse = r.when("raw_created", "Created", loc)
		return s, nil
	})
}

// IRoute is one user of show iroutes: the routes the user's client
// provides to the server (iroute config).
type IRoute struct {
	ID       int
	Username string
	VHost    string
	Device   string
	IP       netip.Addr // the user's tunnel address
	IRoutes  []string
	Raw      map[string]any
}

// ParseIRoutes reads show iroutes output. Before 1.4.0 occtl prints every
// user's fields into one object without separators ("IP" twice per user,
// no comma before the next user's "ID"); each "ID" starts a new user.
func ParseIRoutes(data []byte) ([]IRoute, []Note, error) {
	var notes []Note
	root, err := parseRoot(data, &notes)
	if err != nil {
		return nil, nil, err
	}
	objs, err := entries(root, &notes)
	if err != nil {
		return nil, nil, err
	}
	out := []IRoute{}
	n := 0
	for _, o := range objs {
		parts := splitAt(o, "ID")
		if len(parts) > 1 {
			notes = append(notes, Note{o.Offset, fmt.Sprintf("one object holding %d users split at each \"ID\"", len(parts))})
		}
		for _, part := range parts {
			r := record{part, fmt.Sprintf("entry %d", n), &notes}
			n++
			id, err := requireID(r)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, IRoute{
				ID:       id,
				Username: r.name("Username"),
				VHost:    r.str("vhost"),
				Device:   r.str("Device"),
				IP:       r.addr("IP"),
				IRoutes:  r.strs("iRoutes"),
				Raw:      r.raw(),
			})
		}
	}
	return out, notes, nil
}

// Ban is one entry of show ip bans (an address banned now) or show ip ban
// points (any address with points; Since is zero there).
type Ban struct {
	IP    netip.Addr
	Score int64
	// Since is when the ban expires, despite occtl's name for it: occtl
	// prints the ban's expiry time under "Since". Local time to the minute
	// (SinceCoarse) unless a raw_since is printed.
	Since       time.Time
	SinceCoarse bool
	Raw         map[string]any
}

// ParseBans reads show ip bans or show ip ban points output.
func ParseBans(data []byte, loc *time.Location) ([]Ban, []Note, error) {
	if loc == nil {
		loc = time.Local
	}
	return parseEach(data, func(r record) (Ban, error) {
		b := Ban{IP: r.addr("IP"), Raw: r.raw()}
		if !b.IP.IsValid() {
			off := r.obj.Offset
			if v, _ := r.obj.Get("IP"); v != nil {
				off = v.Offset
			}
			return b, &ParseError{Offset: off, Msg: r.what + `: no readable "IP"`}
		}
		b.Score, _ = r.int("Score")
		b.Since, b.SinceCoarse = r.when("raw_since", "Since", loc)
		return b, nil
	})
}
