package netpolicy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sandbox is one sandbox's network, from Manager.Prepare.
type Sandbox struct {
	id     string
	policy compiled
	log    *slog.Logger

	ns                     *Netns
	index                  int
	hostIf                 string
	gw4, addr4, gw6, addr6 netip.Addr
	table                  *sandboxTable
	resolver               *resolver
	fwd                    *forwarders
	env                    PlatformEnv
	icpt                   *intercept // nil: the Actions cache is not intercepted
	closed                 bool
}

// Netns is the namespace the sandbox's processes must run in.
func (s *Sandbox) Netns() *Netns { return s.ns }

// Enter moves the calling (locked) thread into the sandbox's namespace;
// see Netns.Enter. It makes a Sandbox an executor.Network.
func (s *Sandbox) Enter() (restore func() error, err error) { return s.ns.Enter() }

// Addr is the sandbox's IPv4 address (on its eth0).
func (s *Sandbox) Addr() netip.Addr { return s.addr4 }

// Addr6 is the sandbox's IPv6 address.
func (s *Sandbox) Addr6() netip.Addr { return s.addr6 }

// Gateway is the host's end of the sandbox's link: its resolver and
// platform endpoints.
func (s *Sandbox) Gateway() netip.Addr { return s.gw4 }

// InterceptsActionsCache reports whether the sandbox answers GitHub's
// cache hosts itself (its CA is then at JobCAPath).
func (s *Sandbox) InterceptsActionsCache() bool { return s.icpt != nil }

// Mode is the sandbox's egress mode.
func (s *Sandbox) Mode() Mode { return s.policy.mode }

// Platform is where the sandbox reaches the platform's endpoints.
func (s *Sandbox) Platform() PlatformEnv { return s.env }

// Files are the sandbox's /etc/resolv.conf (its own resolver only) and
// /etc/hosts, and when it intercepts the Actions cache, the certificate
// bundle that trusts its CA (see intercept.go).
func (s *Sandbox) Files(hostname string) []executor.File {
	files := []executor.File{{Path: "/etc/resolv.conf", Data: s.resolvConf()}, {Path: "/etc/hosts", Data: s.hosts(hostname)}}
	if s.icpt != nil {
		files = append(files, s.icpt.files()...)
	}
	return files
}

// resolvConf is the sandbox's /etc/resolv.conf: its own resolver only.
func (s *Sandbox) resolvConf() []byte {
	return fmt.Appendf(nil, "# Nimbus: this sandbox's resolver answers only the names its egress policy allows.\nnameserver %s\noptions edns0\n", s.gw4)
}

// hosts is the sandbox's /etc/hosts.
func (s *Sandbox) hosts(hostname string) []byte {
	return fmt.Appendf(nil, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n%s\t%s\n",
		hostname, s.gw4, PlatformName)
}

// Close removes the sandbox's network and returns its egress report
// (the resolver's names, the nftables sets' connections, the link's
// bytes).
// Call it only once no process is left in the namespace.
func (s *Sandbox) Close() (apiv1.EgressReport, error) {
	if s.closed {
		return apiv1.EgressReport{}, errors.New("sandbox network already closed")
	}
	rep, rerr := s.report()
	err := s.teardown()
	return rep, errors.Join(rerr, err)
}

// report reads what the sandbox did.
func (s *Sandbox) report() (apiv1.EgressReport, error) {
	rep := apiv1.EgressReport{Mode: string(s.policy.mode), Allow: s.policy.allow()}
	var errs []error
	if s.resolver != nil {
		rep.Names, rep.NamesDropped = s.resolver.records()
	}
	if s.table != nil {
		for _, x := range []struct {
			set string
			dst *[]apiv1.EgressConn
		}{{setSeen, &rep.Allowed}, {setRefused, &rep.Refused}, {setUnlisted, &rep.Unlisted}} {
			conns, err := s.table.recorded(x.set)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, c := range conns {
				*x.dst = append(*x.dst, apiv1.EgressConn{Addr: c.Addr.String(), Proto: protoName(c.Proto), Port: c.Port, Count: c.Count})
			}
		}
	}
	if l, err := netlink.LinkByName(s.hostIf); err == nil && l.Attrs().Statistics != nil {
		st := l.Attrs().Statistics
		// The host's end receives what the sandbox sends.
		rep.BytesOut, rep.BytesIn = st.RxBytes, st.TxBytes
	}
	return rep, errors.Join(errs...)
}

// teardown releases everything Prepare built, whatever was reached.
func (s *Sandbox) teardown() error {
	s.closed = true
	var errs []error
	if s.resolver != nil && s.resolver.udp != nil {
		s.resolver.shutdown()
	}
	if s.fwd != nil {
		s.fwd.close()
	}
	if s.table != nil {
		if err := s.table.close(); err != nil {
			errs = append(errs, err)
		}
	}
	// Closing the namespace's last reference (no process is left in it)
	// makes the kernel destroy it, and the veth pair with it, without
	// making us wait: deleting the link ourselves costs a couple of RCU
	// grace periods (20-30 ms). The interface's name, hence its index,
	// stays taken until then; Prepare moves on to the next one.
	if s.ns != nil {
		if err := s.ns.Close(); err != nil {
			errs = append(errs, err)
		}
	} else if s.hostIf != "" {
		if l, err := netlink.LinkByName(s.hostIf); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", s.hostIf, err))
			}
		}
	}
	return errors.Join(errs...)
}

func netnsHandle(n *Netns) netns.NsHandle { return netns.NsHandle(n.FD()) }

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "icmpv6"
	}
	return fmt.Sprintf("proto-%d", p)
}
