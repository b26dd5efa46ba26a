package netpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// sandboxTable is the nftables table inside one sandbox's network
// namespace: the data plane of its egress policy. The namespace belongs to
// the host's user namespace, so nothing in the sandbox (which runs in a
// user namespace of its own, without capabilities) can change it. It goes
// away with the namespace.
//
//	table inet nimbus {
//	  set denied4/6   { interval; AlwaysDenied }
//	  set allow4/6    { interval; the policy's CIDRs }
//	  set dns4/6      { timeout; addresses the resolver answered, for their TTL }
//	  set seen4/6, refused4/6, unlisted4/6 { dynamic; daddr . l4proto . dport; counter }
//	  chain output { type filter hook output priority filter; policy accept;
//	    oifname "lo" accept
//	    ct state established,related accept
//	    icmpv6 type { nd-router-solicit, ..., nd-neighbor-advert } accept
//	    ip daddr GW udp dport 53 accept; ip daddr GW tcp dport {53,80,443,9092} accept
//	    th dport {53, 853} jump refuse          # any other resolver
//	    ip daddr @denied4 jump refuse; ip6 daddr @denied6 jump refuse
//	    ip daddr @allow4 jump allowed; ip daddr @dns4 jump allowed (and IPv6)
//	    jump refuse            # allow-list, offline
//	    jump unlisted          # audit: let through, remember
//	  }
//	  chain allowed  { update @seen;     accept }
//	  chain unlisted { update @unlisted; accept }
//	  chain refuse   { update @refused;  tcp: reject with tcp reset; reject with icmpx admin-prohibited }
//	}
type sandboxTable struct {
	conn  *nftables.Conn
	table *nftables.Table
	sets  map[string]*nftables.Set
}

// Names of the sandbox table's sets.
const (
	setDenied   = "denied"
	setAllow    = "allow"
	setDNS      = "dns"
	setSeen     = "seen"
	setRefused  = "refused"
	setUnlisted = "unlisted"
)

// maxRecorded bounds each recording set: a sandbox spraying connections
// fills it and is recorded no further (the packets are still judged).
const maxRecorded = 4096

// maxDNSAddrs bounds the addresses the resolver may open for a sandbox.
const maxDNSAddrs = 65536

func setName(base string, v6 bool) string {
	if v6 {
		return base + "6"
	}
	return base + "4"
}

// installSandboxTable builds the table in the namespace ns for policy c,
// with gw4 the sandbox's gateway (resolver and platform endpoints).
func installSandboxTable(ns *Netns, c compiled, gw4 netip.Addr) (*sandboxTable, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		return nil, fmt.Errorf("nftables in the sandbox's namespace: %w", err)
	}
	st := &sandboxTable{
		conn:  conn,
		table: &nftables.Table{Family: nftables.TableFamilyINet, Name: hostTable},
		sets:  map[string]*nftables.Set{},
	}
	t := conn.AddTable(st.table)

	allow4, allow6 := splitFamilies(c.prefixes)
	denied4, denied6 := splitFamilies(AlwaysDenied)
	for _, v6 := range []bool{false, true} {
		addrType := nftables.TypeIPAddr
		if v6 {
			addrType = nftables.TypeIP6Addr
		}
		denied, allow := denied4, allow4
		if v6 {
			denied, allow = denied6, allow6
		}
		if err := st.addSet(&nftables.Set{Name: setName(setDenied, v6), KeyType: addrType, Interval: true}, prefixElements(denied)); err != nil {
			return nil, err
		}
		if err := st.addSet(&nftables.Set{Name: setName(setAllow, v6), KeyType: addrType, Interval: true}, prefixElements(allow)); err != nil {
			return nil, err
		}
		if err := st.addSet(&nftables.Set{Name: setName(setDNS, v6), KeyType: addrType, HasTimeout: true, Size: maxDNSAddrs}, nil); err != nil {
			return nil, err
		}
		for _, name := range []string{setSeen, setRefused, setUnlisted} {
			s := &nftables.Set{Name: setName(name, v6), KeyType: connKeyType(v6), Concatenation: true,
				Dynamic: true, Counter: true, Size: maxRecorded}
			if err := st.addSet(s, nil); err != nil {
				return nil, err
			}
		}
	}

	policy := nftables.ChainPolicyAccept
	output := conn.AddChain(&nftables.Chain{Table: t, Name: "output", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	allowed := conn.AddChain(&nftables.Chain{Table: t, Name: "allowed"})
	unlisted := conn.AddChain(&nftables.Chain{Table: t, Name: "unlisted"})
	refuse := conn.AddChain(&nftables.Chain{Table: t, Name: "refuse"})
	add := func(ch *nftables.Chain, parts ...any) {
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rule(parts...)})
	}

	add(output, ifname(expr.MetaKeyOIFNAME, "lo"), accept)
	add(output, ctStateIn(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)
	add(output, neighborDiscovery(), accept)
	add(output, daddrIs(gw4), l4proto(unix.IPPROTO_UDP), dport(dnsPort), accept)
	for _, p := range platformPorts {
		add(output, daddrIs(gw4), l4proto(unix.IPPROTO_TCP), dport(p), accept)
	}
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		for _, p := range []uint16{53, 853} { // DNS, DNS over TLS
			add(output, l4proto(proto), dport(p), jump(refuse.Name))
		}
	}
	for _, v6 := range []bool{false, true} {
		add(output, daddrInSet(st.sets[setName(setDenied, v6)], v6), jump(refuse.Name))
	}
	for _, v6 := range []bool{false, true} {
		add(output, daddrInSet(st.sets[setName(setAllow, v6)], v6), jump(allowed.Name))
		add(output, daddrInSet(st.sets[setName(setDNS, v6)], v6), jump(allowed.Name))
	}
	if c.mode == ModeAudit {
		add(output, jump(unlisted.Name))
	} else {
		add(output, jump(refuse.Name))
	}

	for _, v6 := range []bool{false, true} {
		add(allowed, family(v6), recordConn(st.sets[setName(setSeen, v6)], v6))
		add(unlisted, family(v6), recordConn(st.sets[setName(setUnlisted, v6)], v6))
		add(refuse, family(v6), recordConn(st.sets[setName(setRefused, v6)], v6))
	}
	add(allowed, accept)
	add(unlisted, accept)
	add(refuse, rejectTCP())
	add(refuse, rejectAdmin())

	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("install the sandbox's nftables table: %w", err)
	}
	return st, nil
}

func (st *sandboxTable) addSet(s *nftables.Set, elems []nftables.SetElement) error {
	s.Table = st.table
	if err := st.conn.AddSet(s, elems); err != nil {
		return fmt.Errorf("nftables set %s: %w", s.Name, err)
	}
	st.sets[s.Name] = s
	return nil
}

// allowAddrs opens addresses the resolver answered, each for ttl.
func (st *sandboxTable) allowAddrs(addrs []netip.Addr, ttl time.Duration) error {
	var v4, v6 []nftables.SetElement
	for _, a := range addrs {
		e := nftables.SetElement{Key: a.AsSlice(), Timeout: ttl}
		if a.Is4() {
			v4 = append(v4, e)
		} else {
			v6 = append(v6, e)
		}
	}
	if len(v4) > 0 {
		if err := st.conn.SetAddElements(st.sets[setName(setDNS, false)], v4); err != nil {
			return err
		}
	}
	if len(v6) > 0 {
		if err := st.conn.SetAddElements(st.sets[setName(setDNS, true)], v6); err != nil {
			return err
		}
	}
	return st.conn.Flush()
}

// conn is one recorded connection (or connection attempt).
type conn struct {
	Addr  netip.Addr
	Proto uint8
	Port  uint16
	Count uint64 // new connections seen
}

// recorded reads one family pair of recording sets (setSeen, ...).
func (st *sandboxTable) recorded(base string) ([]conn, error) {
	var out []conn
	for _, v6 := range []bool{false, true} {
		elems, err := st.conn.GetSetElements(st.sets[setName(base, v6)])
		if err != nil {
			return nil, fmt.Errorf("read nftables set %s: %w", setName(base, v6), err)
		}
		for _, e := range elems {
			a, proto, port, ok := decodeConnKey(e.Key, v6)
			if !ok {
				continue
			}
			c := conn{Addr: a, Proto: proto, Port: port, Count: 1}
			if e.Counter != nil && e.Counter.Packets > 0 {
				c.Count = e.Counter.Packets
			}
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b conn) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out, nil
}

func (st *sandboxTable) close() error { return st.conn.CloseLasting() }
