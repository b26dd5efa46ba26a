package netpolicy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PlatformGRPC is the build cache's gRPC endpoint in a sandbox, as Bazel
// takes it.
var PlatformGRPC = "grpc://" + PlatformName + ":" + strconv.Itoa(platformGRPC)

// Defaults of Config.
var (
	DefaultSubnet4 = netip.MustParsePrefix("10.213.0.0/16")
	DefaultSubnet6 = netip.MustParsePrefix("fd6e:6d62:7300::/48")
)

// Config configures a Manager.
type Config struct {
	// Subnet4 is the pool of sandbox addresses: one /30 per sandbox (the
	// gateway .1 on the host, the sandbox .2). Pick one the host's
	// networks do not use. Default DefaultSubnet4.
	Subnet4 netip.Prefix
	// Subnet6 is the IPv6 pool: one /64 per sandbox. At most a /48 is
	// used. Default DefaultSubnet6.
	Subnet6 netip.Prefix
	// Upstream are the DNS servers (host:port) the sandboxes' resolvers
	// ask. Default: the nameservers of the host's /etc/resolv.conf.
	Upstream []string
	// Logger receives the manager's diagnostics. Default: discard.
	Logger *slog.Logger
	// ProcSys is where sysctls are read and written. Default /proc/sys.
	ProcSys string
	// GitHub sends what an interception of GitHub's cache hosts forwards
	// to GitHub (the runner's other calls to those hosts). Default: a
	// transport with the system's roots.
	GitHub http.RoundTripper
}

// Manager gives sandboxes their networks: it installs the host's firewall
// table once, and for each sandbox a namespace, a veth pair to the host,
// the nftables table of its policy, its DNS resolver and its platform
// forwarders. It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Safe for
// concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	slots int
	next  atomic.Int64
}

// nftMu serialises building nftables batches: the nftables library
// numbers sets from a package-level counter.
var nftMu sync.Mutex

// NewManager checks cfg, installs the host's firewall table and turns on
// forwarding.
func NewManager(cfg Config) (*Manager, error) {
	if !cfg.Subnet4.IsValid() {
		cfg.Subnet4 = DefaultSubnet4
	}
	if !cfg.Subnet6.IsValid() {
		cfg.Subnet6 = DefaultSubnet6
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ProcSys == "" {
		cfg.ProcSys = "/proc/sys"
	}
	if cfg.GitHub == nil {
		cfg.GitHub = http.DefaultTransport
	}
	switch {
	case !cfg.Subnet4.Addr().Is4() || cfg.Subnet4.Bits() > 29:
		return nil, fmt.Errorf("sandbox subnet4 %s: want an IPv4 prefix of /29 or wider", cfg.Subnet4)
	case !cfg.Subnet6.Addr().Is6() || cfg.Subnet6.Addr().Is4In6() || cfg.Subnet6.Bits() > 60:
		return nil, fmt.Errorf("sandbox subnet6 %s: want an IPv6 prefix of /60 or wider", cfg.Subnet6)
	}
	cfg.Subnet4, cfg.Subnet6 = cfg.Subnet4.Masked(), cfg.Subnet6.Masked()
	if len(cfg.Upstream) == 0 {
		up, err := resolvConfServers("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("sandbox DNS upstream: %w (set the upstream resolvers)", err)
		}
		cfg.Upstream = up
	}
	for _, u := range cfg.Upstream {
		if _, err := netip.ParseAddrPort(u); err != nil {
			return nil, fmt.Errorf("sandbox DNS upstream %q: want ip:port", u)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sandbox networks need root (network namespaces, veth pairs, nftables)")
	}
	if err := enableForwarding(cfg.ProcSys); err != nil {
		return nil, err
	}
	nftMu.Lock()
	err := ensureHostFirewall()
	nftMu.Unlock()
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "netpolicy")}
	m.slots = min(1<<(32-cfg.Subnet4.Bits())/4, 1<<min(60-cfg.Subnet6.Bits(), 16), 1<<16)
	m.next.Store(rand.Int64N(int64(m.slots)))
	return m, nil
}

// Spec is one sandbox's network.
type Spec struct {
	// ID names the sandbox in logs (the job's id).
	ID       string
	Policy   Policy
	Platform Platform
	// NetnsFD, when above 2, is a network namespace to build in (an
	// executor's own, such as a Docker container's, holding only its
	// loopback interface) instead of a new one. The descriptor is
	// duplicated: the caller keeps its own.
	NetnsFD int
	// InterceptActionsCache points GitHub's cache services, as an
	// unmodified actions/cache reaches them, at the platform's cache
	// (intercept.go). It needs Platform.HTTP and Platform.CacheToken.
	InterceptActionsCache bool
}

// Prepare builds a sandbox's network. The caller runs the sandbox's
// processes in Sandbox.Netns and calls Close once they are all gone.
func (m *Manager) Prepare(ctx context.Context, spec Spec) (*Sandbox, error) {
	pol, err := spec.Policy.compile()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Sandbox{id: spec.ID, policy: pol, log: m.log.With("job_id", spec.ID)}
	ok := false
	defer func() {
		if !ok {
			s.teardown()
		}
	}()
	if spec.NetnsFD > 2 {
		s.ns, err = dupNetns(spec.NetnsFD)
	} else {
		s.ns, err = newNetns()
	}
	if err != nil {
		return nil, err
	}
	if err := m.claimLink(s); err != nil {
		return nil, err
	}
	if err := m.configure(s); err != nil {
		return nil, err
	}
	nftMu.Lock()
	s.table, err = installSandboxTable(s.ns, pol, s.gw4)
	nftMu.Unlock()
	if err != nil {
		return nil, err
	}
	if spec.InterceptActionsCache {
		if spec.Platform.HTTP == nil || spec.Platform.CacheToken == "" {
			return nil, errors.New("intercepting the Actions cache needs the platform's address and the job's cache token")
		}
		allow := func(host string) bool { return pol.mode == ModeAudit || pol.allowsName(host) }
		if s.icpt, err = newIntercept(spec.Platform, m.cfg.GitHub, allow, s.log); err != nil {
			return nil, err
		}
	}
	if err := m.listen(s, spec.Platform); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// claimLink creates the sandbox's veth pair under the first free index:
// the kernel's unique interface names make the index the sandbox's own,
// among every agent on the host.
func (m *Manager) claimLink(s *Sandbox) error {
	for range m.slots {
		i := int(m.next.Add(1) % int64(m.slots))
		name := ifPrefix + strconv.FormatInt(int64(i), 16)
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: name},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(s.ns.FD()),
		}
		err := netlink.LinkAdd(veth)
		if isExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create veth %s: %w", name, err)
		}
		s.index, s.hostIf = i, name
		s.gw4, s.addr4 = nthAddr(m.cfg.Subnet4.Addr(), uint64(4*i+1)), nthAddr(m.cfg.Subnet4.Addr(), uint64(4*i+2))
		base6 := m.cfg.Subnet6.Addr().As16()
		base6[6] |= byte(i >> 8)
		base6[7] |= byte(i)
		net6 := netip.AddrFrom16(base6)
		s.gw6, s.addr6 = nthAddr(net6, 1), nthAddr(net6, 2)
		return nil
	}
	return fmt.Errorf("no free sandbox network: all %d of %s are in use", m.slots, m.cfg.Subnet4)
}

// configure addresses both ends and routes the sandbox through the host.
func (m *Manager) configure(s *Sandbox) error {
	host, err := netlink.LinkByName(s.hostIf)
	if err != nil {
		return fmt.Errorf("find %s: %w", s.hostIf, err)
	}
	for _, a := range []netlink.Addr{addrOf(s.gw4, 30), addrOf(s.gw6, 64)} {
		if err := netlink.AddrAdd(host, &a); err != nil {
			return fmt.Errorf("address %s on %s: %w", a.IPNet, s.hostIf, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring %s up: %w", s.hostIf, err)
	}
	h, err := netlink.NewHandleAt(netnsHandle(s.ns))
	if err != nil {
		return fmt.Errorf("netlink in the sandbox's namespace: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring the sandbox's lo up: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	// A namespace made by someone else (Docker's) may have IPv6 turned off.
	if err := s.ns.Do(func() error {
		for _, k := range []string{"all", "default", "eth0"} {
			p := "/proc/sys/net/ipv6/conf/" + k + "/disable_ipv6"
			if v, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(v)) != "0" {
				if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("turn IPv6 on in the sandbox: %w", err)
	}
	for _, a := range []netlink.Addr{addrOf(s.addr4, 30), addrOf(s.addr6, 64)} {
		if err := h.AddrAdd(eth, &a); err != nil {
			return fmt.Errorf("address %s in the sandbox: %w", a.IPNet, err)
		}
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring the sandbox's eth0 up: %w", err)
	}
	for _, gw := range []netip.Addr{s.gw4, s.gw6} {
		r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %s in the sandbox: %w", gw, err)
		}
	}
	return nil
}

// listen starts the sandbox's resolver and platform forwarders on its
// gateway address.
func (m *Manager) listen(s *Sandbox, p Platform) error {
	gw := s.gw4.String()
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(gw, "53"))
	if err != nil {
		return fmt.Errorf("sandbox resolver: %w", err)
	}
	ln, err := net.Listen("tcp4", net.JoinHostPort(gw, "53"))
	if err != nil {
		pc.Close()
		return fmt.Errorf("sandbox resolver: %w", err)
	}
	s.resolver = &resolver{policy: s.policy, client: s.addr4, gw: s.gw4, upstream: m.cfg.Upstream, table: s.table, log: s.log}
	if s.icpt != nil {
		s.resolver.local = InterceptedHosts
	}
	startResolver(pc, ln, s.resolver)
	s.fwd = &forwarders{}
	if s.icpt != nil {
		ln, err := net.Listen("tcp4", net.JoinHostPort(gw, strconv.Itoa(platformHTTPS)))
		if err != nil {
			return fmt.Errorf("sandbox cache interception: %w", err)
		}
		s.icpt.serve(s.fwd, ln)
	}
	if p.HTTP != nil {
		ln, err := net.Listen("tcp4", net.JoinHostPort(gw, strconv.Itoa(platformHTTP)))
		if err != nil {
			return fmt.Errorf("sandbox platform endpoint: %w", err)
		}
		s.fwd.startHTTP(ln, p, s.addr4.AsSlice(), s.log)
		s.env.HTTP = "http://" + PlatformName
	}
	if p.GRPC != "" {
		ln, err := net.Listen("tcp4", net.JoinHostPort(gw, strconv.Itoa(platformGRPC)))
		if err != nil {
			return fmt.Errorf("sandbox platform endpoint: %w", err)
		}
		s.fwd.startTCP(ln, p.GRPC, s.log)
		s.env.GRPC = PlatformGRPC
	}
	return nil
}

func addrOf(a netip.Addr, bits int) netlink.Addr {
	return netlink.Addr{
		IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())},
		// No duplicate address detection: it would keep an IPv6 address
		// unusable for a second or two, and nothing else is on the link.
		Flags: unix.IFA_F_NODAD,
	}
}

// nthAddr is base + n (n small).
func nthAddr(base netip.Addr, n uint64) netip.Addr {
	b := base.AsSlice()
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		sum := uint64(b[i]) + n&0xff
		b[i] = byte(sum)
		n = n>>8 + sum>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// resolvConfServers reads the nameservers of a resolv.conf, as ip:53.
func resolvConfServers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, netip.AddrPortFrom(a, 53).String())
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no nameserver", path)
	}
	return out, sc.Err()
}
