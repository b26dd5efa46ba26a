package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/netpolicy/netpolicytest"
)

// The tests here run as root against real namespaces, veths, nftables and
// DNS. The clients run from inside a sandbox's namespace (the agent's own
// dial-in helper), so the sandbox's nftables output chain judges them like
// any process of the sandbox; executor tests repeat the attacks from real
// sandboxed processes.

func newTestManager(t *testing.T, w *netpolicytest.World) *Manager {
	t.Helper()
	m, err := NewManager(Config{Upstream: []string{w.DNS}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func prepare(t *testing.T, m *Manager, pol Policy) *Sandbox {
	t.Helper()
	s, err := m.Prepare(context.Background(), Spec{ID: t.Name(), Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.closed {
			s.Close()
		}
	})
	return s
}

// client is a sandboxed process's view of the network.
type client struct {
	t *testing.T
	s *Sandbox
}

// dial connects from inside the sandbox; names go to its resolver (A
// first, then AAAA), as a sandboxed process's would.
func (c client) dial(network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		addr, err := c.lookup(host)
		if err != nil {
			return nil, err
		}
		address = net.JoinHostPort(addr.String(), port)
	}
	return c.s.Netns().DialContext(ctx, network, address)
}

func (c client) lookup(name string) (netip.Addr, error) {
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := c.query(c.ownResolver(), "udp", name, qtype)
		if err != nil {
			return netip.Addr{}, err
		}
		for _, rr := range resp.Answer {
			switch v := rr.(type) {
			case *dns.A:
				a, _ := netip.AddrFromSlice(v.A.To4())
				return a, nil
			case *dns.AAAA:
				a, _ := netip.AddrFromSlice(v.AAAA)
				return a, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("lookup %s: no address", name)
}

func (c client) get(addr string) (string, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) { return c.dial(network, a) },
	}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	return netpolicytest.Get(context.Background(), hc, addr)
}

// query sends one DNS question to server from inside the sandbox.
func (c client) query(server, network, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	var resp *dns.Msg
	err := c.s.Netns().Do(func() error {
		dc := &dns.Client{Net: network, Timeout: 3 * time.Second}
		var err error
		resp, _, err = dc.Exchange(m, server)
		return err
	})
	return resp, err
}

func (c client) ownResolver() string {
	return netip.AddrPortFrom(c.s.Gateway(), 53).String()
}

// mustRefuse checks that err is an immediate refusal: reset or ICMP
// prohibited, never a timeout.
func mustRefuse(t *testing.T, what string, err error, took time.Duration) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: connected, want refused", what)
	}
	if took > 2*time.Second {
		t.Fatalf("%s: refused after %v, want at once (reject, not drop): %v", what, took, err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.EACCES) &&
		!errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EPERM) {
		t.Fatalf("%s: %v, want connection refused or host unreachable", what, err)
	}
}

func (c client) mustReach(addr, want string) {
	c.t.Helper()
	body, err := c.get(addr)
	if err != nil {
		c.t.Fatalf("GET %s from the sandbox: %v", addr, err)
	}
	if !strings.Contains(body, want) {
		c.t.Fatalf("GET %s: %q, want %q", addr, body, want)
	}
}

func (c client) mustNotReach(addr string) {
	c.t.Helper()
	start := time.Now()
	conn, err := c.dial("tcp", addr)
	if conn != nil {
		conn.Close()
	}
	mustRefuse(c.t, "connect "+addr, err, time.Since(start))
}

func TestAllowListEnforcedInDataPlane(t *testing.T) {
	w := netpolicytest.New(t)
	m := newTestManager(t, w)
	s := prepare(t, m, Policy{Mode: ModeAllowList, Allow: []string{"allowed.test", "v6.allowed.test", "rebind.allowed.test",
		"meta.allowed.test", "*.wild.test"}})
	c := client{t, s}

	// An allowed name resolves and its address opens.
	c.mustReach("allowed.test", "hello from "+netpolicytest.Public.String())
	c.mustReach("deep.www.wild.test", "hello from "+netpolicytest.Public.String())
	// IPv6 too.
	c.mustReach("v6.allowed.test", "hello from "+netpolicytest.Public6.String())

	// A public address never answered by the resolver stays closed: no
	// raw-IP way around the allow-list, IPv4 or IPv6.
	c.mustNotReach(netip.AddrPortFrom(netpolicytest.Public2, 80).String())
	// Metadata, CGNAT (Alibaba's metadata), private ranges: always.
	for _, a := range []netip.Addr{netpolicytest.Metadata, netpolicytest.Metadata6, netpolicytest.Alibaba, netpolicytest.Private} {
		c.mustNotReach(netip.AddrPortFrom(a, 80).String())
	}

	// A name not on the list: NXDOMAIN, and the upstream never hears it.
	resp, err := c.query(c.ownResolver(), "udp", "other.test", dns.TypeA)
	if err != nil || resp.Rcode != dns.RcodeNameError {
		t.Fatalf("other.test: %v %v, want NXDOMAIN", resp, err)
	}
	if _, err := c.get("other.test"); err == nil {
		t.Fatal("other.test reachable")
	}
	if n := w.Queries("other.test"); n != 0 {
		t.Fatalf("upstream got %d queries for a denied name", n)
	}
	// wild.test itself is not under *.wild.test.
	if resp, err := c.query(c.ownResolver(), "udp", "wild.test", dns.TypeA); err != nil || resp.Rcode != dns.RcodeNameError {
		t.Fatalf("wild.test: %v %v, want NXDOMAIN", resp, err)
	}

	// Data smuggled in queries goes nowhere: TXT for an allowed name, long
	// labels and odd names for others, over UDP and TCP.
	before := w.QueriesTotal()
	if resp, err := c.query(c.ownResolver(), "udp", "allowed.test", dns.TypeTXT); err != nil || len(resp.Answer) != 0 {
		t.Fatalf("TXT allowed.test: %v %v, want an empty answer", resp, err)
	}
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".exfil.example"
	for _, network := range []string{"udp", "tcp"} {
		resp, err := c.query(c.ownResolver(), network, long, dns.TypeA)
		if err != nil || resp.Rcode != dns.RcodeNameError {
			t.Fatalf("%s long-label query: %v %v, want NXDOMAIN", network, resp, err)
		}
		resp, err = c.query(c.ownResolver(), network, "c2VjcmV0.exfil.example", dns.TypeTXT)
		if err != nil || resp.Rcode != dns.RcodeNameError {
			t.Fatalf("%s TXT query: %v %v, want NXDOMAIN", network, resp, err)
		}
	}
	if after := w.QueriesTotal(); after != before {
		t.Fatalf("upstream received %d queries meant to carry data out", after-before)
	}

	// Any other resolver: refused at once, over UDP, TCP and DNS over TLS,
	// even at an address that is otherwise allowed.
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		_, err := c.query(netip.AddrPortFrom(netpolicytest.Public, 53).String(), network, "other.test", dns.TypeA)
		mustRefuse(t, network+" query to an outside resolver", err, time.Since(start))
	}
	c.mustNotReach(netip.AddrPortFrom(netpolicytest.Public, 853).String())

	// DNS rebinding: an allowed name answering loopback or metadata
	// addresses opens nothing; its public address still works.
	resp, err = c.query(c.ownResolver(), "udp", "rebind.allowed.test", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			got = append(got, a.A.String())
		}
	}
	if !slices.Equal(got, []string{netpolicytest.Public2.String()}) {
		t.Fatalf("rebind.allowed.test answered %v, want only %s", got, netpolicytest.Public2)
	}
	c.mustNotReach(netip.AddrPortFrom(netpolicytest.Metadata, 80).String())
	c.mustReach(netip.AddrPortFrom(netpolicytest.Public2, 80).String(), "hello from "+netpolicytest.Public2.String())
	if resp, err := c.query(c.ownResolver(), "udp", "meta.allowed.test", dns.TypeA); err != nil || len(resp.Answer) != 0 {
		t.Fatalf("meta.allowed.test: %v %v, want no address", resp, err)
	}

	rep, err := s.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != string(ModeAllowList) {
		t.Errorf("report mode %q", rep.Mode)
	}
	if !hasConn(rep.Allowed, netpolicytest.Public.String(), 80) || !hasConn(rep.Refused, netpolicytest.Metadata.String(), 80) ||
		!hasConn(rep.Refused, netpolicytest.Public.String(), 53) {
		t.Errorf("report connections: allowed %+v refused %+v", rep.Allowed, rep.Refused)
	}
	if !hasName(rep.Names, "other.test", VerdictDenied) || !hasName(rep.Names, "allowed.test", VerdictAllowed) {
		t.Errorf("report names: %+v", rep.Names)
	}
	if rep.BytesOut == 0 || rep.BytesIn == 0 {
		t.Errorf("report bytes: %d out, %d in", rep.BytesOut, rep.BytesIn)
	}
}

func hasConn(cs []apiv1.EgressConn, addr string, port uint16) bool {
	for _, c := range cs {
		if c.Addr == addr && c.Port == port {
			return true
		}
	}
	return false
}

func hasName(ns []apiv1.EgressName, name, verdict string) bool {
	for _, n := range ns {
		if n.Name == name && n.Verdict == verdict {
			return true
		}
	}
	return false
}

func TestHostAndOtherSandboxesUnreachable(t *testing.T) {
	w := netpolicytest.New(t)
	m := newTestManager(t, w)
	a := prepare(t, m, Policy{Mode: ModeAudit})
	b := prepare(t, m, Policy{Mode: ModeAudit})
	ca := client{t, a}

	// A service of the host on every address (like an agent or a control
	// plane on 0.0.0.0), on a port the sandbox's own gateway also serves.
	for _, port := range []int{0, platformHTTP} {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			if port != 0 {
				continue // port 80 taken on this host: the first case covers it
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		p := ln.Addr().(*net.TCPAddr).Port
		for _, host := range []netip.Addr{a.Gateway(), b.Gateway(), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:1::1")} {
			if host == a.Gateway() && p == platformHTTP {
				continue // the sandbox's own platform port: served by the agent
			}
			ca.mustNotReach(netip.AddrPortFrom(host, uint16(p)).String())
		}
	}

	// Another sandbox's port, even in audit mode.
	var ln net.Listener
	if err := b.Netns().Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ca.mustNotReach(netip.AddrPortFrom(b.Addr(), 8080).String())
	ca.mustNotReach(netip.AddrPortFrom(b.Addr6(), 8080).String())

	// Audit mode lets an unlisted destination through and says so.
	ca.mustReach(netip.AddrPortFrom(netpolicytest.Public2, 80).String(), "hello from")
	ca.mustNotReach(netip.AddrPortFrom(netpolicytest.Metadata, 80).String())
	resp, err := ca.query(ca.ownResolver(), "udp", "other.test", dns.TypeA)
	if err != nil || len(resp.Answer) != 1 {
		t.Fatalf("audit mode: other.test %v %v, want answered", resp, err)
	}
	rep, err := a.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !hasConn(rep.Unlisted, netpolicytest.Public2.String(), 80) || !hasName(rep.Names, "other.test", VerdictUnlisted) {
		t.Errorf("audit report: unlisted %+v names %+v", rep.Unlisted, rep.Names)
	}
	if !hasConn(rep.Refused, netpolicytest.Metadata.String(), 80) {
		t.Errorf("audit report: refused %+v", rep.Refused)
	}
}

func TestOfflineReachesOnlyThePlatform(t *testing.T) {
	w := netpolicytest.New(t)
	m := newTestManager(t, w)
	s := prepare(t, m, Policy{Mode: ModeOffline, Allow: nil})
	c := client{t, s}
	resp, err := c.query(c.ownResolver(), "udp", PlatformName, dns.TypeA)
	if err != nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != s.Gateway().String() {
		t.Fatalf("%s: %v %v, want the gateway", PlatformName, resp, err)
	}
	if resp, err := c.query(c.ownResolver(), "udp", "allowed.test", dns.TypeA); err != nil || resp.Rcode != dns.RcodeNameError {
		t.Fatalf("offline: allowed.test %v %v, want NXDOMAIN", resp, err)
	}
	c.mustNotReach(netip.AddrPortFrom(netpolicytest.Public, 80).String())
}

func TestNothingLeftBehind(t *testing.T) {
	w := netpolicytest.New(t)
	subnet := netip.MustParsePrefix("10.218.0.0/16")
	m, err := NewManager(Config{Subnet4: subnet, Upstream: []string{w.DNS}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		s := prepare(t, m, Policy{Mode: ModeAllowList, Allow: []string{"allowed.test"}})
		if _, err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	netpolicytest.WaitNoSubnetLinks(t, subnet)
}

// The host's table holds on its own: with a sandbox's table gone (as if
// it were wrong), the metadata address, private ranges, the host's
// services and other sandboxes stay unreachable, and the rest still goes
// out through NAT.
func TestHostTableHoldsWithoutTheSandboxTable(t *testing.T) {
	w := netpolicytest.New(t)
	m := newTestManager(t, w)
	a := prepare(t, m, Policy{Mode: ModeAllowList})
	b := prepare(t, m, Policy{Mode: ModeAllowList})
	nftMu.Lock()
	a.table.conn.DelTable(a.table.table)
	err := a.table.conn.Flush()
	nftMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hostPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	var bl net.Listener
	if err := b.Netns().Do(func() error {
		var err error
		bl, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer bl.Close()

	c := client{t, a}
	c.mustReach(netip.AddrPortFrom(netpolicytest.Public2, 80).String(), "hello from")
	for _, target := range []netip.AddrPort{
		netip.AddrPortFrom(netpolicytest.Metadata, 80), netip.AddrPortFrom(netpolicytest.Metadata6, 80),
		netip.AddrPortFrom(netpolicytest.Private, 80), netip.AddrPortFrom(netpolicytest.Alibaba, 80),
		netip.AddrPortFrom(a.Gateway(), hostPort), netip.AddrPortFrom(b.Gateway(), hostPort),
		netip.AddrPortFrom(b.Gateway(), platformHTTP), // another sandbox's gateway service
		netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), hostPort),
		netip.AddrPortFrom(b.Addr(), 8080), netip.AddrPortFrom(b.Addr6(), 8080),
	} {
		c.mustNotReach(target.String())
	}
}
