package netpolicy

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Small builders of nftables expressions, so that the rule sets in
// firewall.go and sandbox_table.go read like the nft lines in their
// comments. Registers: 1 is the 16-byte register 1; concatenations use the
// 4-byte registers from regConcat on.
const (
	reg1      = 1
	regConcat = 8 // NFT_REG32_00
)

type exprs []expr.Any

// ifnamePrefix: iifname or oifname starting with prefix ("nmbj*").
func ifnamePrefix(key expr.MetaKey, prefix string, eq bool) exprs {
	op := expr.CmpOpEq
	if !eq {
		op = expr.CmpOpNeq
	}
	return exprs{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Cmp{Op: op, Register: reg1, Data: []byte(prefix)},
	}
}

// ifname: iifname or oifname equal to name.
func ifname(key expr.MetaKey, name string) exprs {
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, name)
	return exprs{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: data},
	}
}

// toOwnGateway: fib daddr . iif type local (the destination is an
// address of the interface the packet arrived on).
func toOwnGateway() exprs {
	return exprs{
		&expr.Fib{Register: reg1, ResultADDRTYPE: true, FlagDADDR: true, FlagIIF: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// nfproto: the packet is IPv4 (unix.NFPROTO_IPV4) or IPv6.
func nfproto(p byte) exprs {
	return exprs{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
	}
}

// l4proto: meta l4proto p.
func l4proto(p byte) exprs {
	return exprs{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
	}
}

// neighborDiscovery: icmpv6 type of router or neighbour solicitation or
// advertisement (133-136), without which IPv6 has no link.
func neighborDiscovery() exprs {
	return exprs{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{133}, ToData: []byte{136}},
	}
}

// dport: th dport port (after an l4proto match).
func dport(port uint16) exprs {
	return exprs{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// daddrLoad loads the destination address of an IPv4 or IPv6 packet.
func daddrLoad(v6 bool, reg uint32) expr.Any {
	if v6 {
		return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

// daddrIs: ip[6] daddr == a (the family match included).
func daddrIs(a netip.Addr) exprs {
	v6 := a.Is6()
	return append(family(v6), daddrLoad(v6, reg1),
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: a.AsSlice()})
}

// daddrInSet: ip[6] daddr @set.
func daddrInSet(s *nftables.Set, v6 bool) exprs {
	return append(family(v6), daddrLoad(v6, reg1),
		&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID})
}

func family(v6 bool) exprs {
	if v6 {
		return nfproto(unix.NFPROTO_IPV6)
	}
	return nfproto(unix.NFPROTO_IPV4)
}

// ctStateIn: ct state & bits != 0.
func ctStateIn(bits uint32) exprs {
	return exprs{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}
}

// recordConn adds the packet's (daddr . l4proto . th dport) to a set of
// that key type, counting how often (one per new connection).
func recordConn(s *nftables.Set, v6 bool) exprs {
	addrRegs := uint32(1)
	if v6 {
		addrRegs = 4
	}
	return exprs{
		daddrLoad(v6, regConcat),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regConcat + addrRegs},
		&expr.Payload{DestRegister: regConcat + addrRegs + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Dynset{SrcRegKey: regConcat, SetName: s.Name, SetID: s.ID, Operation: unix.NFT_DYNSET_OP_UPDATE,
			Exprs: []expr.Any{&expr.Counter{}}},
	}
}

// connKeyType is the key of recordConn's sets.
func connKeyType(v6 bool) nftables.SetDatatype {
	a := nftables.TypeIPAddr
	if v6 {
		a = nftables.TypeIP6Addr
	}
	return nftables.MustConcatSetType(a, nftables.TypeInetProto, nftables.TypeInetService)
}

// decodeConnKey reads a recordConn set element's key.
func decodeConnKey(k []byte, v6 bool) (addr netip.Addr, proto uint8, port uint16, ok bool) {
	n := 4
	if v6 {
		n = 16
	}
	if len(k) < n+8 {
		return netip.Addr{}, 0, 0, false
	}
	addr, _ = netip.AddrFromSlice(k[:n])
	return addr, k[n], binary.BigEndian.Uint16(k[n+4 : n+6]), true
}

var (
	accept = &expr.Verdict{Kind: expr.VerdictAccept}
	drop   = &expr.Verdict{Kind: expr.VerdictDrop}
)

func jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

// rejectTCP answers a TCP packet with a reset (connection refused at once).
func rejectTCP() exprs {
	return append(l4proto(unix.IPPROTO_TCP), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
}

// rejectAdmin answers with ICMP(v6) "administratively prohibited".
func rejectAdmin() expr.Any {
	return &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}
}

// prefixElements are an interval set's elements for prefixes of one
// family: each range's start, and the address after its end flagged as an
// interval end.
func prefixElements(pfxs []netip.Prefix) []nftables.SetElement {
	var out []nftables.SetElement
	for _, p := range mergePrefixes(pfxs) {
		start := p.Masked().Addr()
		out = append(out, nftables.SetElement{Key: start.AsSlice()})
		if end, ok := afterPrefix(p); ok {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// afterPrefix is the first address past p; false when p reaches the end
// of its family's space.
func afterPrefix(p netip.Prefix) (netip.Addr, bool) {
	b := p.Masked().Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	// Set the host bits, then add one.
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			a, _ := netip.AddrFromSlice(b)
			return a, true
		}
	}
	return netip.Addr{}, false
}

// mergePrefixes sorts prefixes and drops those inside another, because
// the kernel refuses overlapping intervals.
func mergePrefixes(pfxs []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range pfxs {
		p = p.Masked()
		covered := false
		for _, q := range pfxs {
			q = q.Masked()
			if q != p && q.Bits() < p.Bits() && q.Contains(p.Addr()) {
				covered = true
				break
			}
		}
		if !covered && !containsPrefix(out, p) {
			out = append(out, p)
		}
	}
	sortPrefixes(out)
	return out
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func sortPrefixes(ps []netip.Prefix) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Addr().Less(ps[j-1].Addr()); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// splitFamilies returns the IPv4 and the IPv6 prefixes of ps.
func splitFamilies(ps []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// rule is one rule of a chain: its expressions in order.
func rule(parts ...any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		switch v := p.(type) {
		case exprs:
			out = append(out, v...)
		case expr.Any:
			out = append(out, v)
		default:
			panic(fmt.Sprintf("netpolicy: %T in a rule", p))
		}
	}
	return out
}
