package firewall

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ocserv-telemetry/ocserv-telemetry/events"
)

// TablePrefix starts the name of every nftables table this package makes:
// "inet octel_<device>". It must stay outside every name any ocserv-fw
// claims: the nftables ocserv-fw of ocserv 1.4.2 to 1.5.0 deletes
// "inet ocserv_<device>" on disconnect and every "inet ocserv_*" table on
// --removeall (see names_test.go, which checks each version's patterns).
const TablePrefix = "octel_"

// LegacyTablePrefix is the prefix earlier releases used
// ("inet ocserv_telemetry_<device>"), inside ocserv-fw 1.5.0's claim.
// Hosts upgraded with sessions connected still have such tables: Remove,
// Clear, Apply (as leftover cleanup) and RemoveAll delete them too. No
// owner is recorded in them, and a new session never gets one, so a
// legacy table can only be a session's from before the upgrade.
const LegacyTablePrefix = "ocserv_telemetry_"

// Chain names inside a device's table.
const (
	nftBaseChain   = "forward" // base chain on the forward hook
	nftUserChain   = "user"    // traffic from the device
	nftRoutesChain = "routes"  // the route checks
	// Empty chains whose names record the owner: "owner_id_<ID>" and
	// "owner_uid_<session_uid>". Remove deletes them by name in the same
	// batch as the table, so the batch fails, changing nothing, when the
	// table is another session's: the owner check and the removal are one
	// kernel transaction (a table's handle or userdata would need
	// messages google/nftables does not send).
	nftOwnerIDPrefix  = "owner_id_"
	nftOwnerUIDPrefix = "owner_uid_"
)

// nftPriority is upstream's: filter - 10, so the device's policy is decided
// before iptables' (priority filter) and firewalld's chains see the packet.
var nftPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)

type nftBackend struct {
	// hold keeps every netlink socket open until Close (OpenHeld).
	hold bool
	mu   sync.Mutex
	held []*nftables.Conn
}

func newNft(hold bool) *nftBackend { return &nftBackend{hold: hold} }

func (*nftBackend) Name() string { return KindNftables }

// conn returns a fresh connection for one operation. Conn buffers messages
// until Flush, so sharing one between goroutines would mix their batches;
// a non-lasting Conn costs nothing until Flush opens its socket (in the
// calling thread's network namespace) and closes it when the kernel has
// answered. The socket gets ctx's deadline, so a stuck kernel answer
// cannot outlive the hook's budget.
//
// A held backend's connections are lasting ones, dialled here (in the
// calling thread's namespace too) and closed only by Close: closing a
// netfilter socket while a deletion awaits its RCU grace period waits
// for that period (the kernel's nft_rcv_nl_event flushes its destroy
// work), a wait that does not change the rules, which are gone when the
// batch is answered.
func (n *nftBackend) conn(ctx context.Context) (*nftables.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var opts []nftables.ConnOption
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nftables.WithSockOptions(func(c *netlink.Conn) error {
			return c.SetDeadline(dl)
		}))
	}
	if !n.hold {
		return nftables.New(opts...)
	}
	c, err := nftables.New(append(opts, nftables.AsLasting())...)
	if err != nil {
		return nil, fmt.Errorf("nftables: open a netlink socket: %w", err)
	}
	n.mu.Lock()
	n.held = append(n.held, c)
	n.mu.Unlock()
	return c, nil
}

// Close closes the sockets a held backend kept open; it waits for the
// kernel to free what this backend's deletions removed. A backend opened
// with Open holds nothing, and Close returns at once.
func (n *nftBackend) Close() error {
	n.mu.Lock()
	held := n.held
	n.held = nil
	n.mu.Unlock()
	var errs []error
	for _, c := range held {
		if err := c.CloseLasting(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nftables: close netlink sockets: %w", err)
	}
	return nil
}

// probe asks the kernel for a table that does not exist: "no such file"
// proves nf_tables answers; anything else (EPROTONOSUPPORT, EPERM) means
// this backend cannot work here.
func (n *nftBackend) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := n.conn(ctx)
	if err != nil {
		return err
	}
	_, err = c.ListTableOfFamily(TablePrefix+"probe-", nftables.TableFamilyINet)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("nf_tables not available: %w", err)
}

func nftTable(dev string) *nftables.Table {
	return &nftables.Table{Name: TablePrefix + dev, Family: nftables.TableFamilyINet}
}

func nftLegacyTable(dev string) *nftables.Table {
	return &nftables.Table{Name: LegacyTablePrefix + dev, Family: nftables.TableFamilyINet}
}

// ownerChains are the names of the chains that record owner.
func ownerChains(owner Owner) []string {
	names := []string{nftOwnerIDPrefix + strconv.Itoa(owner.ID)}
	if owner.UID != "" {
		names = append(names, nftOwnerUIDPrefix+owner.UID)
	}
	return names
}

// ownerComment is the comment on the base chain's rules (nft's "comment"),
// for a person reading the ruleset; ownership is decided by the chains.
func ownerComment(owner Owner) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, jumpComment(owner))
}

// delIfPresent queues the deletion of t whether or not it exists: "add"
// creates it when missing, so the delete cannot fail the batch.
func delIfPresent(c *nftables.Conn, t *nftables.Table) {
	c.AddTable(t)
	c.DelTable(t)
}

func (n *nftBackend) Apply(ctx context.Context, dev string, owner Owner, p *events.Policy) error {
	pl, err := buildPlan(dev, p)
	if err != nil {
		return err
	}
	return n.install(ctx, pl, owner)
}

func (n *nftBackend) RejectAll(ctx context.Context, dev string, owner Owner) error {
	pl, err := rejectPlan(dev)
	if err != nil {
		return err
	}
	return n.install(ctx, pl, owner)
}

// install replaces the device's table in one netlink batch, which the
// kernel applies as one transaction: the old table (if any) and the new one
// are never both missing, half-built, or both present.
//
// The common case, no leftover table, is tried first with "create" (which
// fails the whole batch when the table exists): a deletion costs an RCU
// grace period (about 10 ms here, several times the cost of building the
// table), waited for when the socket closes, and a batch that fails waits
// for one before it answers; so a connect deletes only when there is
// something to delete.
//
// A table under the legacy name (an earlier release's, for a session from
// before an upgrade whose disconnect was missed) is looked up first, one
// cheap request, and deleted in the same batch when it is there.
func (n *nftBackend) install(ctx context.Context, pl *plan, owner Owner) error {
	t, legacy := nftTable(pl.dev), nftLegacyTable(pl.dev)
	c, err := n.conn(ctx)
	if err != nil {
		return err
	}
	_, lerr := c.ListTableOfFamily(legacy.Name, nftables.TableFamilyINet)
	hasLegacy := lerr == nil
	if hasLegacy {
		delIfPresent(c, legacy)
	}
	c.CreateTable(t)
	nftBuild(c, t, pl, owner)
	errFresh := c.Flush()
	if errFresh == nil {
		return nil
	}
	if c, err = n.conn(ctx); err != nil {
		return err
	}
	// The leftover (whoever owned it) goes, and the new table is built, in
	// one transaction.
	delIfPresent(c, legacy)
	delIfPresent(c, t)
	c.AddTable(t)
	nftBuild(c, t, pl, owner)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: apply table %s: %w (creating it: %v)", t.Name, err, errFresh)
	}
	return nil
}

// nftBuild queues the table's chains and rules on c (the table itself is
// already queued). Chains come first
// and rules after, routes before user before base: within a batch a jump
// can only name a chain that is already there.
func nftBuild(c *nftables.Conn, t *nftables.Table, pl *plan, owner Owner) {
	for _, name := range ownerChains(owner) {
		c.AddChain(&nftables.Chain{Name: name, Table: t})
	}
	accept := nftables.ChainPolicyAccept
	base := c.AddChain(&nftables.Chain{
		Name: nftBaseChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftPriority, Policy: &accept,
	})
	if !pl.reject {
		user := c.AddChain(&nftables.Chain{Name: nftUserChain, Table: t})
		routes := c.AddChain(&nftables.Chain{Name: nftRoutesChain, Table: t})
		for _, r := range pl.routes {
			c.AddRule(&nftables.Rule{Table: t, Chain: routes, Exprs: nftRule(r)})
		}
		for _, r := range pl.user {
			c.AddRule(&nftables.Rule{Table: t, Chain: user, Exprs: nftRule(r)})
		}
	}
	for _, exprs := range nftBaseRules(pl) {
		c.AddRule(&nftables.Rule{Table: t, Chain: base, Exprs: exprs, UserData: ownerComment(owner)})
	}
}

// nftBaseRules are the base chain's rules: return traffic to the device
// accepted (both families) and traffic from the device sent to the user
// chain; or, for reject-all, everything from and to the device rejected.
func nftBaseRules(pl *plan) [][]expr.Any {
	if pl.reject {
		return [][]expr.Any{
			append(matchIfname(expr.MetaKeyIIFNAME, pl.dev), rejectExpr()),
			append(matchIfname(expr.MetaKeyOIFNAME, pl.dev), rejectExpr()),
		}
	}
	established := append(matchIfname(expr.MetaKeyOIFNAME, pl.dev),
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept})
	toUser := append(matchIfname(expr.MetaKeyIIFNAME, pl.dev),
		&expr.Verdict{Kind: expr.VerdictJump, Chain: nftUserChain})
	return [][]expr.Any{established, toUser}
}

// matchIfname compares the whole 16-byte (IFNAMSIZ) name, NUL padding
// included, so "vpns1" never matches "vpns10" (exact, not a prefix).
func matchIfname(key expr.MetaKey, dev string) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, dev)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
	}
}

func rejectExpr() expr.Any {
	// icmpx port-unreachable: ICMP port unreachable for IPv4, ICMPv6 port
	// unreachable for IPv6, the same as iptables' default REJECT.
	return &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}
}

// nftRule renders one plan rule. In an inet table the family must be
// matched explicitly before reading an address (nft's CLI adds the same
// "meta nfproto" dependency itself).
func nftRule(r rule) []expr.Any {
	var e []expr.Any
	if r.family != 0 {
		fam := byte(unix.NFPROTO_IPV4)
		if r.family == 6 {
			fam = unix.NFPROTO_IPV6
		}
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}})
	}
	if r.dst.IsValid() {
		addr := r.dst.Addr().AsSlice()
		off := uint32(16) // IPv4 destination address
		if r.family == 6 {
			off = 24 // IPv6 destination address
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(addr))})
		if bits := r.dst.Bits(); bits < len(addr)*8 {
			mask := make([]byte, len(addr))
			for i := 0; i < bits; i++ {
				mask[i/8] |= 0x80 >> (i % 8)
			}
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))})
		}
		e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr})
	}
	if r.proto != "" {
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNum[r.proto]}})
	}
	if r.port != 0 {
		port := make([]byte, 2)
		binary.BigEndian.PutUint16(port, uint16(r.port))
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port})
	}
	if r.icmp6 >= 0 {
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.icmp6)}})
	}
	if r.ctNew {
		e = append(e, &expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW | expr.CtStateBitESTABLISHED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	}
	switch r.v {
	case vAccept:
		e = append(e, &expr.Verdict{Kind: expr.VerdictAccept})
	case vReject:
		e = append(e, rejectExpr())
	case vRoutes:
		e = append(e, &expr.Verdict{Kind: expr.VerdictJump, Chain: nftRoutesChain})
	}
	return e
}

// Remove deletes dev's table if owner's chains are in it, and a legacy
// table for dev, in one batch. When owner's chains are missing the kernel
// fails the whole batch (nothing changes), and the table is then read to
// tell "nothing there" from "another session's".
func (n *nftBackend) Remove(ctx context.Context, dev string, owner Owner) error {
	if err := ValidDevice(dev); err != nil {
		return err
	}
	if owner.ID <= 0 {
		return errNoOwner
	}
	t, legacy := nftTable(dev), nftLegacyTable(dev)
	c, err := n.conn(ctx)
	if err != nil {
		return err
	}
	for _, name := range ownerChains(owner) {
		c.DelChain(&nftables.Chain{Name: name, Table: t})
	}
	c.DelTable(t)
	delIfPresent(c, legacy)
	errOwned := c.Flush()
	if errOwned == nil {
		return nil
	}
	cur, exists, err := n.owner(ctx, dev)
	if err != nil {
		return fmt.Errorf("nftables: delete table %s: %w (reading its owner: %v)", t.Name, errOwned, err)
	}
	// Whatever else happens, the legacy table is not the new session's.
	if c, err = n.conn(ctx); err != nil {
		return err
	}
	delIfPresent(c, legacy)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table %s: %w", legacy.Name, err)
	}
	if !exists {
		return nil // nothing of ours for this device
	}
	if !owner.matches(cur) {
		return &NotOwnerError{Dev: dev, Current: cur}
	}
	return fmt.Errorf("nftables: delete table %s: %w", t.Name, errOwned)
}

// owner reads which session dev's table records, and whether it exists.
func (n *nftBackend) owner(ctx context.Context, dev string) (Owner, bool, error) {
	c, err := n.conn(ctx)
	if err != nil {
		return Owner{}, false, err
	}
	t := nftTable(dev)
	if _, err := c.ListTableOfFamily(t.Name, nftables.TableFamilyINet); errors.Is(err, unix.ENOENT) {
		return Owner{}, false, nil
	} else if err != nil {
		return Owner{}, false, err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return Owner{}, true, err
	}
	var o Owner
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != t.Name {
			continue
		}
		if v, ok := strings.CutPrefix(ch.Name, nftOwnerIDPrefix); ok {
			o.ID, _ = strconv.Atoi(v)
		} else if v, ok := strings.CutPrefix(ch.Name, nftOwnerUIDPrefix); ok {
			o.UID = v
		}
	}
	return o, true, nil
}

// Clear deletes dev's table and its legacy table, whoever made them, in
// one batch. It looks first, and sends no batch when neither is there (the
// usual case: an unrestricted user's connect): a deletion costs an RCU
// grace period even when there was nothing to delete (install), and a
// login waits for the connect.
func (n *nftBackend) Clear(ctx context.Context, dev string) error {
	if err := ValidDevice(dev); err != nil {
		return err
	}
	c, err := n.conn(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, t := range []*nftables.Table{nftLegacyTable(dev), nftTable(dev)} {
		_, err := c.ListTableOfFamily(t.Name, nftables.TableFamilyINet)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, unix.ENOENT):
			return fmt.Errorf("nftables: look up table %s: %w", t.Name, err)
		}
	}
	if !found {
		return nil
	}
	delIfPresent(c, nftLegacyTable(dev))
	delIfPresent(c, nftTable(dev))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table %s: %w", nftTable(dev).Name, err)
	}
	return nil
}

// isOurTable reports whether an inet table's name is one this backend
// makes, or made under the legacy name.
func isOurTable(name string) bool {
	for _, p := range []string{TablePrefix, LegacyTablePrefix} {
		if d, ok := strings.CutPrefix(name, p); ok && ValidDevice(d) == nil {
			return true
		}
	}
	return false
}

// RemoveAll deletes every inet table named by TablePrefix or
// LegacyTablePrefix, in one batch. A table deleted by someone else between
// the listing and the batch makes the batch fail as a whole, so it is
// retried a few times.
func (n *nftBackend) RemoveAll(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var c *nftables.Conn
		if c, err = n.conn(ctx); err != nil {
			return err
		}
		var tables []*nftables.Table
		if tables, err = c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
			return fmt.Errorf("nftables: list tables: %w", err)
		}
		for _, t := range tables {
			if isOurTable(t.Name) {
				c.DelTable(&nftables.Table{Name: t.Name, Family: nftables.TableFamilyINet})
			}
		}
		if err = c.Flush(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("nftables: remove all: %w", err)
}
