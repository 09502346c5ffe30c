package ledgertest

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ocserv-telemetry/ocserv-telemetry/ledger"
)

// Workload describes a realistic fleet's event stream: sessions arriving
// over time on several servers, each a connect, an accounting sample every
// interval while it lasts, and its end (a disconnect, or for some a
// reconcile lost); some clients roam to a new worker (reconcile joined);
// now and then an audit event. Deterministic for a seed.
type Workload struct {
	Seed     uint64
	Servers  int
	Users    int
	Start    time.Time
	Interval time.Duration // accounting interval (default 5m)
	// MeanSession is the mean session length (default 40m).
	MeanSession time.Duration
}

type step struct {
	at   time.Time
	kind int // 0 connect, 1 accounting, 2 end, 3 roam
	s    *wsess
}

type wsess struct {
	uid, logical string
	gen          *Gen
	user         string
	connected    time.Time
	end          time.Time
	slot         int64
	in, out      uint64
	lost, roams  bool
}

type steps []*step

func (h steps) Len() int           { return len(h) }
func (h steps) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h steps) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *steps) Push(x any)        { *h = append(*h, x.(*step)) }
func (h *steps) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Messages are the workload's first n events with their stream sequences
// (1, 2, …), as the consumer hands them over.
func (w Workload) Messages(n int) []ledger.Message {
	var msgs []ledger.Message
	w.Emit(n, func(m ledger.Message) bool {
		m.StreamSeq = uint64(len(msgs) + 1)
		msgs = append(msgs, m)
		return true
	})
	return msgs
}

// Emit produces n events in time order, calling emit for each; emit
// returns false to stop early.
func (w Workload) Emit(n int, emit func(ledger.Message) bool) {
	if w.Servers <= 0 {
		w.Servers = 4
	}
	if w.Users <= 0 {
		w.Users = 2000
	}
	if w.Interval <= 0 {
		w.Interval = 5 * time.Minute
	}
	if w.MeanSession <= 0 {
		w.MeanSession = 40 * time.Minute
	}
	if w.Start.IsZero() {
		w.Start = time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second)
	}
	r := rand.New(rand.NewPCG(w.Seed, w.Seed^0x9e3779b97f4a7c15))
	seq := &Seq{}
	now := w.Start // the time of the step being emitted
	gens := make([]*Gen, w.Servers)
	for i := range gens {
		gens[i] = NewGen(fmt.Sprintf("vpn%d", i+1), seq)
		gens[i].SpoolID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)
		gens[i].NewID = func() string { return detUID(r, now) }
	}
	h := &steps{}
	// New sessions arrive at a rate that keeps the stream flowing.
	next := w.Start
	newSession := func(at time.Time) {
		g := gens[r.IntN(len(gens))]
		s := &wsess{uid: detUID(r, at), gen: g, user: fmt.Sprintf("user%05d", r.IntN(w.Users)), connected: at,
			lost: r.IntN(10) == 0, roams: r.IntN(20) == 0}
		s.logical = s.uid
		s.end = at.Add(time.Duration(r.ExpFloat64() * float64(w.MeanSession)))
		heap.Push(h, &step{at: at, kind: 0, s: s})
	}
	sent := 0
	out := func(m ledger.Message) bool {
		sent++
		return emit(m) && sent < n
	}
	audits := 0
	for sent < n {
		for h.Len() == 0 || !next.After((*h)[0].at) {
			newSession(next)
			next = next.Add(time.Duration(r.IntN(4000)) * time.Millisecond)
		}
		st := heap.Pop(h).(*step)
		now = st.at
		s := st.s
		var m ledger.Message
		switch st.kind {
		case 0:
			m = s.gen.Connect(s.uid, Conn{User: s.user, Group: "staff", IPReal: fmt.Sprintf("203.0.%d.%d", r.IntN(256), 1+r.IntN(254)),
				VPN4: fmt.Sprintf("10.%d.%d.%d", 8+r.IntN(4), r.IntN(256), 2+r.IntN(250))}, st.at)
			if first := s.connected.Add(w.Interval); first.Before(s.end) {
				heap.Push(h, &step{at: first, kind: 1, s: s})
			}
			heap.Push(h, &step{at: s.end, kind: 2, s: s})
		case 1:
			s.slot++
			din, dout := uint64(r.IntN(50<<20)), uint64(r.IntN(200<<20))
			s.in, s.out = s.in+din, s.out+dout
			m = s.gen.Accounting(s.uid, Acct{Slot: s.slot, Logical: s.logical, In: s.in, Out: s.out, DeltaIn: din, DeltaOut: dout,
				Connected: s.connected}, st.at)
			if nx := st.at.Add(w.Interval); nx.Before(s.end) {
				heap.Push(h, &step{at: nx, kind: 1, s: s})
			}
		case 2:
			s.in += uint64(r.IntN(1 << 20))
			s.out += uint64(r.IntN(4 << 20))
			if s.lost {
				in, out := s.in, s.out
				m = s.gen.Reconcile(s.uid, Rec{Action: "lost", Logical: s.logical, Connected: s.connected, LastSeen: st.at, In: &in, Out: &out}, st.at.Add(time.Minute))
			} else {
				m = s.gen.Disconnect(s.uid, s.in, s.out, int64(st.at.Sub(s.connected)/time.Second), st.at)
			}
			if s.roams && !s.lost {
				// The client comes back with its cookie on a new worker.
				n := &wsess{uid: detUID(r, st.at.Add(2*time.Second)), logical: s.logical, gen: s.gen, user: s.user, connected: st.at.Add(2 * time.Second)}
				n.end = n.connected.Add(time.Duration(r.ExpFloat64() * float64(w.MeanSession)))
				heap.Push(h, &step{at: n.connected, kind: 3, s: n})
			}
			s.gen.Forget(s.uid)
		case 3:
			m = s.gen.Connect(s.uid, Conn{User: s.user, Group: "staff", IPReal: fmt.Sprintf("198.18.%d.%d", r.IntN(256), 1+r.IntN(254)),
				VPN4: fmt.Sprintf("10.%d.%d.%d", 8+r.IntN(4), r.IntN(256), 2+r.IntN(250))}, st.at)
			if !out(m) {
				return
			}
			m = s.gen.Reconcile(s.uid, Rec{Action: "joined", Logical: s.logical, Joined: []string{s.logical}, Connected: s.connected}, st.at.Add(30*time.Second))
			if first := s.connected.Add(w.Interval); first.Before(s.end) {
				heap.Push(h, &step{at: first, kind: 1, s: s})
			}
			heap.Push(h, &step{at: s.end, kind: 2, s: s})
		}
		if !out(m) {
			return
		}
		if audits++; audits%500 == 0 {
			if !out(gens[r.IntN(len(gens))].Audit("disconnect", "alice@ops", r.IntN(4) != 0, st.at)) {
				return
			}
		}
	}
}

// detUID is a UUIDv7 made at t, its random bits from r: like the hook's
// session_uids and event ids (events.NewUUIDv7), whose time prefix puts
// the newest sessions' rows together in every index keyed by them. (Fully
// random ids would make each of a session's samples and counter updates
// land on a page of its own, as no real stream does.)
func detUID(r *rand.Rand, t time.Time) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	ms := uint64(t.UnixMilli())
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
