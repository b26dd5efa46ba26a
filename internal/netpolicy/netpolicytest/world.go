// Package netpolicytest builds, for tests, an "outside world" in a network
// namespace of the test's own: servers on public-looking documentation
// addresses, on a cloud metadata address, on private ranges, and an
// upstream DNS server that answers test names. Tests then check what a
// sandbox can and cannot reach. Only one world exists on a host at a time:
// New takes a host-wide lock, because the metadata address is one.
package netpolicytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the world. Public* are routable documentation addresses
// (allowed unless a policy says otherwise); the rest are always denied.
var (
	Public     = netip.MustParseAddr("198.51.100.7")
	Public2    = netip.MustParseAddr("198.51.100.8")
	Public6    = netip.MustParseAddr("2001:db8:1::7")
	Metadata   = netip.MustParseAddr("169.254.169.254")
	Metadata6  = netip.MustParseAddr("fd00:ec2::254")
	Alibaba    = netip.MustParseAddr("100.100.100.200")
	Private    = netip.MustParseAddr("10.77.0.7")
	hostSide4  = netip.MustParsePrefix("198.51.100.1/24")
	hostSide6  = netip.MustParsePrefix("2001:db8:1::1/64")
	worldLink  = "nmbworld"
	HTTPPort   = 80
	lockPath   = "/run/nimbus-netpolicytest.lock"
	worldAddrs = []netip.Prefix{
		netip.MustParsePrefix("198.51.100.7/24"), netip.MustParsePrefix("198.51.100.8/32"),
		netip.MustParsePrefix("2001:db8:1::7/64"),
		netip.MustParsePrefix("169.254.169.254/32"), netip.MustParsePrefix("fd00:ec2::254/128"),
		netip.MustParsePrefix("100.100.100.200/32"), netip.MustParsePrefix("10.77.0.7/32"),
	}
	// hostRoutes send the non-connected world addresses to the world.
	hostRoutes = []netip.Prefix{
		netip.MustParsePrefix("169.254.169.254/32"), netip.MustParsePrefix("fd00:ec2::254/128"),
		netip.MustParsePrefix("100.100.100.200/32"), netip.MustParsePrefix("10.77.0.7/32"),
	}
)

// World is the test's outside world.
type World struct {
	// DNS is the upstream resolver's address (127.0.0.1:port, on the host).
	DNS string
	// Queries counts the questions the upstream resolver received, by
	// lower-case name without the trailing dot.
	queries sync.Map // string -> *atomic.Int64

	ns      netns.NsHandle
	lock    *os.File
	servers []*http.Server
	dns     *dns.Server
}

// Names the upstream resolver answers (and with what).
var Names = map[string][]netip.Addr{
	"allowed.test":         {Public},
	"www.wild.test":        {Public},
	"deep.www.wild.test":   {Public},
	"wild.test":            {Public},
	"other.test":           {Public2},
	"v6.allowed.test":      {Public6},
	"rebind.allowed.test":  {netip.MustParseAddr("127.0.0.1"), Metadata, Public2},
	"meta.allowed.test":    {Metadata},
	"private.allowed.test": {Private},
}

// New builds the world, or skips the test when not root. It is torn down
// with the test.
func New(t testing.TB) *World {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: network tests need root")
		}
		t.Skip("network tests need root")
	}
	w := &World{}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	w.lock = lock
	t.Cleanup(w.close)
	if err := w.build(); err != nil {
		t.Fatal(err)
	}
	if err := w.startDNS(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{Public, Public2, Public6, Metadata, Metadata6, Alibaba, Private} {
		if err := w.serveHTTP(a); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *World) build() error {
	// A leftover of a crashed run: its link and routes.
	if l, err := netlink.LinkByName(worldLink); err == nil {
		_ = netlink.LinkDel(l)
	}
	runtimeLockedNew := func() (netns.NsHandle, error) {
		var h netns.NsHandle
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			lockThread()
			orig, e := netns.Get()
			if e != nil {
				err = e
				return
			}
			defer orig.Close()
			h, err = netns.New()
			if e := netns.Set(orig); e != nil && err == nil {
				err = e
				return // thread stays locked and is retired
			}
			unlockThread()
		}()
		<-done
		return h, err
	}
	ns, err := runtimeLockedNew()
	if err != nil {
		return fmt.Errorf("world namespace: %w", err)
	}
	w.ns = ns
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: worldLink}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("world link: %w", err)
	}
	host, err := netlink.LinkByName(worldLink)
	if err != nil {
		return err
	}
	for _, p := range []netip.Prefix{hostSide4, hostSide6} {
		if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: ipnet(p), Flags: unix.IFA_F_NODAD}); err != nil {
			return fmt.Errorf("world host address %s: %w", p, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	for _, p := range hostRoutes {
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: ipnet(p), Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route %s to the world: %w", p, err)
		}
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, _ := h.LinkByName("lo")
	if err := h.LinkSetUp(lo); err != nil {
		return err
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	for _, p := range worldAddrs {
		if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipnet(p), Flags: unix.IFA_F_NODAD}); err != nil {
			return fmt.Errorf("world address %s: %w", p, err)
		}
	}
	if err := h.LinkSetUp(eth); err != nil {
		return err
	}
	for _, gw := range []netip.Addr{hostSide4.Addr(), hostSide6.Addr()} {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("world default route: %w", err)
		}
	}
	return nil
}

// serveHTTP answers "hello from ADDR" on a:80 inside the world.
func (w *World) serveHTTP(a netip.Addr) error {
	var ln net.Listener
	err := w.do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(a, uint16(HTTPPort)).String())
		return err
	})
	if err != nil {
		return fmt.Errorf("world server on %s: %w", a, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "hello from %s", a)
	}), ReadHeaderTimeout: 5 * time.Second}
	w.servers = append(w.servers, srv)
	go srv.Serve(ln)
	return nil
}

func (w *World) startDNS() error {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w.DNS = pc.LocalAddr().String()
	started := make(chan struct{})
	w.dns = &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(rw dns.ResponseWriter, q *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(q)
		if len(q.Question) != 1 {
			resp.Rcode = dns.RcodeFormatError
			_ = rw.WriteMsg(resp)
			return
		}
		qq := q.Question[0]
		name := strings.TrimSuffix(strings.ToLower(qq.Name), ".")
		c, _ := w.queries.LoadOrStore(name, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
		addrs, ok := Names[name]
		if !ok {
			resp.Rcode = dns.RcodeNameError
		}
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Ttl: 60}
			switch {
			case a.Is4() && qq.Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && qq.Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			case qq.Qtype == dns.TypeTXT:
				hdr.Rrtype = dns.TypeTXT
				resp.Answer = append(resp.Answer, &dns.TXT{Hdr: hdr, Txt: []string{"data"}})
			}
		}
		_ = rw.WriteMsg(resp)
	})}
	go w.dns.ActivateAndServe()
	<-started
	return nil
}

// Queries returns how many questions for name the upstream resolver got.
func (w *World) Queries(name string) int64 {
	c, ok := w.queries.Load(strings.TrimSuffix(strings.ToLower(name), "."))
	if !ok {
		return 0
	}
	return c.(*atomic.Int64).Load()
}

// QueriesTotal sums every question the upstream resolver got.
func (w *World) QueriesTotal() int64 {
	var n int64
	w.queries.Range(func(_, v any) bool { n += v.(*atomic.Int64).Load(); return true })
	return n
}

func (w *World) close() {
	for _, s := range w.servers {
		_ = s.Close()
	}
	if w.dns != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = w.dns.ShutdownContext(ctx)
		cancel()
	}
	if l, err := netlink.LinkByName(worldLink); err == nil {
		_ = netlink.LinkDel(l)
	}
	if w.ns != 0 {
		_ = w.ns.Close()
	}
	if w.lock != nil {
		_ = w.lock.Close() // releases the flock
	}
}

// do runs fn with the calling thread in the world's namespace.
func (w *World) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		lockThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(w.ns); err != nil {
			errc <- err
			unlockThread()
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- err
			return // retired
		}
		unlockThread()
		errc <- ferr
	}()
	return <-errc
}

// Get fetches http://addr/ with client, returning the body.
func Get(ctx context.Context, client *http.Client, addr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// BuildNettool compiles the nettool command (static) into a temporary
// directory of the test and returns the directory, to bind into sandboxes.
func BuildNettool(t testing.TB) string {
	t.Helper()
	// Not t.TempDir: sandbox uids must traverse every parent.
	dir, err := os.MkdirTemp("", "nimbus-nettool-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "nettool"), "github.com/nimbus-build/nimbus/internal/netpolicy/netpolicytest/nettool")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nettool: %v\n%s", err, out)
	}
	return dir
}

// SubnetLinks lists the host's interfaces holding an IPv4 address of pfx
// (a sandbox's host side holds its gateway's).
func SubnetLinks(t testing.TB, pfx netip.Prefix) []string {
	t.Helper()
	// A dump taken while links come and go is marked interrupted
	// (NLM_F_DUMP_INTR); it is taken again.
	links, err := netlink.LinkList()
	for tries := 0; errors.Is(err, netlink.ErrDumpInterrupted) && tries < 50; tries++ {
		time.Sleep(10 * time.Millisecond)
		links, err = netlink.LinkList()
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			// A partial dump: the link counts as left, so the caller
			// looks again.
			out = append(out, l.Attrs().Name)
			continue
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && pfx.Contains(ip) {
				out = append(out, l.Attrs().Name)
			}
		}
	}
	return out
}

// WaitNoSubnetLinks waits for the kernel to remove the sandboxes of pfx
// whose last reference went (a namespace goes asynchronously, its veth
// pair with it).
func WaitNoSubnetLinks(t testing.TB, pfx netip.Prefix) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := SubnetLinks(t, pfx)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox links of %s left: %v", pfx, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
