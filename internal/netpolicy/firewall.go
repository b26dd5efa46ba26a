package netpolicy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The host's side of every sandbox network.
const (
	// hostTable is the one nftables table the agent owns on the host
	// (family inet). Its content is the same for every agent and version
	// that uses it, so agents sharing a host agree on it; nothing else of
	// the host's ruleset is touched.
	hostTable = "nimbus"
	// ifPrefix starts the name of every sandbox's host-side interface.
	ifPrefix = "nmbj"
)

// Ports the agent serves on a sandbox's gateway address.
const (
	dnsPort       = 53
	platformHTTP  = 80   // the control plane's HTTP endpoints (caches)
	platformHTTPS = 443  // reserved for TLS endpoints a sandbox trusts
	platformGRPC  = 9092 // the build cache's gRPC API
)

// platformPorts are the TCP ports a sandbox may reach on its gateway.
var platformPorts = []uint16{dnsPort, platformHTTP, platformHTTPS, platformGRPC}

// ensureHostFirewall installs (or atomically replaces) the host table:
//
//	table inet nimbus {
//	  set denied4 { type ipv4_addr; flags interval; elements = AlwaysDenied }
//	  set denied6 { ... }
//	  chain input { type filter hook input priority filter - 10; policy accept;
//	    iifname "nmbj*" jump sandbox_in }
//	  chain sandbox_in {   # a sandbox talking to the host itself
//	    ct state established,related accept
//	    icmpv6 type { nd-router-solicit, ..., nd-neighbor-advert } accept
//	    fib daddr . iif type local udp dport 53 accept
//	    fib daddr . iif type local tcp dport { 53, 80, 443, 9092 } accept
//	    reject with tcp reset / icmpx admin-prohibited
//	  }
//	  chain forward { type filter hook forward priority filter - 10; policy accept;
//	    iifname "nmbj*" jump sandbox_out
//	    oifname "nmbj*" ct state established,related accept
//	    oifname "nmbj*" drop }   # nothing new into a sandbox
//	  chain sandbox_out {
//	    oifname "nmbj*" reject   # sandbox to sandbox
//	    ip daddr @denied4 reject; ip6 daddr @denied6 reject
//	    accept }
//	  chain postrouting { type nat hook postrouting priority srcnat;
//	    iifname "nmbj*" oifname != "nmbj*" masquerade }
//	}
//
// Traffic to any of the host's own addresses is local, so it meets input,
// not forward: only the resolver and the platform endpoints answer there,
// and only on the sandbox's own gateway address ("fib daddr . iif type
// local": the address belongs to the interface the packet came in on), so
// a service the host runs on another of its addresses stays out of reach.
// The sandbox's own table (sandbox_table.go) decides the allow-list; this
// table is what holds even if that one were wrong.
func ensureHostFirewall() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: hostTable}
	// Replace in one transaction: add (so the delete cannot fail), delete,
	// create afresh.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)

	v4, v6 := splitFamilies(AlwaysDenied)
	denied4 := &nftables.Set{Table: t, Name: "denied4", KeyType: nftables.TypeIPAddr, Interval: true}
	denied6 := &nftables.Set{Table: t, Name: "denied6", KeyType: nftables.TypeIP6Addr, Interval: true}
	if err := c.AddSet(denied4, prefixElements(v4)); err != nil {
		return fmt.Errorf("nftables set denied4: %w", err)
	}
	if err := c.AddSet(denied6, prefixElements(v6)); err != nil {
		return fmt.Errorf("nftables set denied6: %w", err)
	}

	filterPrio := nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)
	policy := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{Table: t, Name: "input", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: filterPrio, Policy: &policy})
	sandboxIn := c.AddChain(&nftables.Chain{Table: t, Name: "sandbox_in"})
	forward := c.AddChain(&nftables.Chain{Table: t, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: filterPrio, Policy: &policy})
	sandboxOut := c.AddChain(&nftables.Chain{Table: t, Name: "sandbox_out"})
	post := c.AddChain(&nftables.Chain{Table: t, Name: "postrouting", Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})

	add := func(ch *nftables.Chain, parts ...any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rule(parts...)})
	}
	fromSandbox := ifnamePrefix(expr.MetaKeyIIFNAME, ifPrefix, true)
	toSandbox := ifnamePrefix(expr.MetaKeyOIFNAME, ifPrefix, true)
	established := ctStateIn(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)

	add(input, fromSandbox, jump(sandboxIn.Name))
	add(sandboxIn, established, accept)
	add(sandboxIn, neighborDiscovery(), accept)
	add(sandboxIn, toOwnGateway(), l4proto(unix.IPPROTO_UDP), dport(dnsPort), accept)
	for _, p := range platformPorts {
		add(sandboxIn, toOwnGateway(), l4proto(unix.IPPROTO_TCP), dport(p), accept)
	}
	add(sandboxIn, rejectTCP())
	add(sandboxIn, rejectAdmin())

	add(forward, fromSandbox, jump(sandboxOut.Name))
	add(forward, toSandbox, established, accept)
	add(forward, toSandbox, drop)
	add(sandboxOut, toSandbox, rejectAdmin())
	add(sandboxOut, daddrInSet(denied4, false), rejectAdmin())
	add(sandboxOut, daddrInSet(denied6, true), rejectAdmin())
	add(sandboxOut, accept)

	add(post, fromSandbox, ifnamePrefix(expr.MetaKeyOIFNAME, ifPrefix, false), &expr.Masq{})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install the host's nftables table %q: %w", hostTable, err)
	}
	return nil
}

// removeHostFirewall deletes the host table (when no agent on the host
// uses it any more; tests).
func removeHostFirewall() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: hostTable}
	c.AddTable(t)
	c.DelTable(t)
	return c.Flush()
}

// enableForwarding turns on IPv4 and IPv6 forwarding, as any router of
// containers must. Turning on IPv6 forwarding makes Linux ignore router
// advertisements on interfaces with accept_ra=1; those are set to 2
// (accept even when forwarding) first, so a host configured by SLAAC keeps
// its addresses and routes.
func enableForwarding(procSys string) error {
	if v, _ := readSysctl(procSys, "net/ipv6/conf/all/forwarding"); v != "1" {
		confs, _ := filepath.Glob(filepath.Join(procSys, "net/ipv6/conf/*/accept_ra"))
		for _, p := range confs {
			iface := filepath.Base(filepath.Dir(p))
			if iface == "all" || iface == "default" || iface == "lo" || strings.HasPrefix(iface, ifPrefix) {
				continue
			}
			if v, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(v)) == "1" {
				if err := os.WriteFile(p, []byte("2"), 0o644); err != nil {
					return fmt.Errorf("keep router advertisements on %s: %w", iface, err)
				}
			}
		}
	}
	var errs []error
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if v, _ := readSysctl(procSys, k); v == "1" {
			continue
		}
		if err := os.WriteFile(filepath.Join(procSys, k), []byte("1"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("enable forwarding (%s): %w", strings.ReplaceAll(k, "/", "."), err))
		}
	}
	return errors.Join(errs...)
}

func readSysctl(procSys, key string) (string, error) {
	b, err := os.ReadFile(filepath.Join(procSys, key))
	return strings.TrimSpace(string(b)), err
}
