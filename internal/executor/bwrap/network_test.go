package bwrap

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/netpolicy/netpolicytest"
)

// The red team: from inside a real job (a bubblewrap sandbox joined to its
// prepared network, running as its unprivileged uid), every attack below
// must fail at once while the allowed target works in the same job.
// Targets live in the test's own "world" namespace and on the host.
func TestNetworkRedTeam(t *testing.T) {
	requireBwrap(t)
	w := netpolicytest.New(t)
	tool := netpolicytest.BuildNettool(t)
	m, err := netpolicy.NewManager(netpolicy.Config{Upstream: []string{w.DNS}})
	if err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t)

	// Stand-ins for the agent and the control plane: services on every
	// host address, and an abstract Unix socket of the host.
	hostLn, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go acceptAll(hostLn)
	hostPort := hostLn.Addr().(*net.TCPAddr).Port
	abstract := fmt.Sprintf("@nimbus-redteam-%d", os.Getpid())
	unixLn, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer unixLn.Close()
	go acceptAll(unixLn)

	// Another job, listening on its own port.
	other, err := m.Prepare(t.Context(), netpolicy.Spec{ID: "other", Policy: netpolicy.Policy{Mode: netpolicy.ModeAudit}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stopOther := context.WithCancel(t.Context())
	otherOut := newWatchWriter("listening")
	otherDone := make(chan struct{})
	go func() {
		defer close(otherDone)
		e.Run(ctx, executor.Spec{JobID: "other", Slot: newSlot(t), Network: other, Output: otherOut,
			Argv:  []string{"/nettool/nettool", "other", "listen", "tcp", ":8080", "60s"},
			Binds: []executor.Bind{{Source: tool, Target: "/nettool", ReadOnly: true}}})
	}()
	defer func() {
		stopOther()
		<-otherDone
		other.Close()
	}()
	select {
	case <-otherOut.ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("the other job never listened: %s", otherOut.String())
	}

	job, err := m.Prepare(t.Context(), netpolicy.Spec{ID: "redteam", Policy: netpolicy.Policy{
		Mode: netpolicy.ModeAllowList, Allow: []string{"allowed.test", "v6.allowed.test", "rebind.allowed.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	gw := job.Gateway().String()
	ports := func(a netip.Addr, p int) string { return netip.AddrPortFrom(a, uint16(p)).String() }
	checks := []struct {
		label, cmd string
		allow      bool
		want       string // in the line
	}{
		{"allowed", "get http://allowed.test/", true, "hello from 198.51.100.7"},
		{"allowed6", "get http://v6.allowed.test/", true, "hello from 2001:db8:1::7"},
		{"metadata", "get http://169.254.169.254/latest/meta-data/", false, ""},
		{"metadata6", "get http://[fd00:ec2::254]/", false, ""},
		{"alibaba", "get http://100.100.100.200/", false, ""},
		{"private", "get http://10.77.0.7/", false, ""},
		{"rawip", "connect tcp " + ports(netpolicytest.Public2, 80), false, ""},
		{"rawip6", "connect tcp [2001:db8:1::8]:80", false, ""},
		{"host-gw", "connect tcp " + ports(job.Gateway(), hostPort), false, ""},
		{"host-world", "connect tcp " + ports(netip.MustParseAddr("198.51.100.1"), hostPort), false, ""},
		{"host-world6", "connect tcp " + ports(netip.MustParseAddr("2001:db8:1::1"), hostPort), false, ""},
		{"loopback", "connect tcp " + ports(netip.MustParseAddr("127.0.0.1"), hostPort), false, ""},
		{"other-job", "connect tcp " + ports(other.Addr(), 8080), false, ""},
		{"other-job6", "connect tcp " + ports(other.Addr6(), 8080), false, ""},
		{"dns-denied", "dns " + gw + ":53 udp other.test A", true, "rcode=NXDOMAIN"},
		{"dns-txt", "dns " + gw + ":53 udp allowed.test TXT", true, "answers=\n"},
		{"dns-long", "dns " + gw + ":53 udp " + strings.Repeat("x", 60) + "." + strings.Repeat("y", 60) + ".exfil.example TXT", true, "rcode=NXDOMAIN"},
		{"dns-outside", "dns " + ports(netpolicytest.Public, 53) + " udp allowed.test A", false, ""},
		{"dns-outside-tcp", "dns " + ports(netpolicytest.Public, 53) + " tcp allowed.test A", false, ""},
		{"dot", "connect tcp " + ports(netpolicytest.Public, 853), false, ""},
		{"rebind", "dns " + gw + ":53 udp rebind.allowed.test A", true, "answers=198.51.100.8\n"},
		{"rebind-meta", "get http://169.254.169.254/", false, ""},
		{"unix-host", "unix " + abstract, false, ""},
	}
	var script strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&script, "/nettool/nettool %s %s\n", c.label, c.cmd)
	}
	script.WriteString("echo \"fds: $(ls /proc/self/fd | tr '\\n' ' ')\"\n")
	script.WriteString("ip route del default 2>&1 && echo 'route: changed' || echo 'route: refused'\n")
	script.WriteString("ip link set eth0 down 2>&1 && echo 'link: changed' || echo 'link: refused'\n")
	script.WriteString("nft flush ruleset 2>&1 && echo 'nft: changed' || echo 'nft: refused'\n")
	before := w.QueriesTotal()
	res, out := runScript(t, e, newSlot(t), script.String(), func(s *executor.Spec) {
		s.Network = job
		s.Binds = []executor.Bind{{Source: tool, Target: "/nettool", ReadOnly: true}}
	})
	defer func() {
		if t.Failed() {
			t.Logf("job output:\n%s", out)
		}
	}()
	rep, err := job.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", res.ExitCode, out)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			lines[k] = v + "\n"
		}
	}
	for _, c := range checks {
		got, ok := lines[c.label]
		switch {
		case !ok:
			t.Errorf("%s: no result in:\n%s", c.label, out)
		case c.allow && (!strings.HasPrefix(got, "ok ") || !strings.Contains(got, c.want)):
			t.Errorf("%s (%s): %q, want ok with %q", c.label, c.cmd, got, c.want)
		case !c.allow && !strings.HasPrefix(got, "err "):
			t.Errorf("%s (%s): %q, want it refused", c.label, c.cmd, got)
		case !c.allow && strings.Contains(got, "timeout"):
			t.Errorf("%s (%s): %q, want refused at once, not dropped", c.label, c.cmd, got)
		}
	}
	for _, k := range []string{"route", "link", "nft"} {
		if lines[k] != "refused\n" {
			t.Errorf("%s from inside the job: %q, want refused:\n%s", k, lines[k], out)
		}
	}
	// Nothing of the agent's descriptors reaches the job (ls's own
	// directory descriptor is 3).
	if lines["fds"] != "0 1 2 3 \n" {
		t.Errorf("descriptors open in the job: %q", lines["fds"])
	}
	// Queries that carry data or ask for denied names never left.
	if got := w.QueriesTotal() - before; got != int64(w.Queries("allowed.test")+w.Queries("v6.allowed.test")+w.Queries("rebind.allowed.test")) {
		t.Errorf("the upstream resolver got %d queries, not all for allowed names", got)
	}
	if len(rep.Refused) == 0 || len(rep.Allowed) == 0 {
		t.Errorf("egress report: %+v", rep)
	}
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// childRunNetwork is a stand-in agent: one job with a network (in
// crashSubnet), running a sleep, until the parent kills it.
func childRunNetwork() int {
	m, err := netpolicy.NewManager(netpolicy.Config{Subnet4: crashSubnet, Upstream: []string{"127.0.0.1:53"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sb, err := m.Prepare(context.Background(), netpolicy.Spec{ID: "crash", Policy: netpolicy.Policy{Mode: netpolicy.ModeOffline}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	base, _ := strconv.Atoi(os.Getenv(childBaseEnv))
	slot, _ := strconv.Atoi(os.Getenv(childSlotEnv))
	e, err := New(Options{WorkRoot: os.Getenv(childRootEnv), UIDBase: base})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	res, err := e.Run(context.Background(), executor.Spec{JobID: "crash", Slot: slot, Network: sb, Output: os.Stdout,
		Argv: []string{"sh", "-c", os.Getenv(childArgEnv)}})
	fmt.Printf("result: %+v, %v\n", res, err)
	return 0
}

var crashSubnet = netip.MustParsePrefix("10.217.0.0/16")

// An agent killed while its job runs leaves no network behind: the
// namespace is held by the agent's descriptor and the job's processes,
// which die with it, and its veth pair goes with the namespace. Nothing
// needs sweeping at the next start.
func TestNetworkGoneWithCrashedAgent(t *testing.T) {
	requireBwrap(t)
	requireRoot(t)
	root := filepath.Join(traversableDir(t), "work")
	token := newToken()
	slot := newSlot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"=runnet", childRootEnv+"="+root, childBaseEnv+"="+strconv.Itoa(testUIDBase),
		childSlotEnv+"="+strconv.Itoa(slot), childArgEnv+"=echo started; sleep "+token)
	out := newWatchWriter("started")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-out.ready:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the job never started: %s", out.String())
	}
	if len(netpolicytest.SubnetLinks(t, crashSubnet)) != 1 {
		t.Fatalf("the job's link is not there: %v", netpolicytest.SubnetLinks(t, crashSubnet))
	}
	cmd.Process.Kill()
	cmd.Wait()
	netpolicytest.WaitNoSubnetLinks(t, crashSubnet)
	deadline := time.Now().Add(10 * time.Second)
	for len(liveProcesses(t, -1, token)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("job processes left: %v", liveProcesses(t, -1, token))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Many jobs with networks, some at once: every namespace, veth, nftables
// table (inside the namespaces), resolver and forwarder socket goes.
func TestNetworkManyJobsLeaveNothing(t *testing.T) {
	requireBwrap(t)
	requireRoot(t)
	t.Parallel()
	subnet := netip.MustParsePrefix("10.216.0.0/16")
	m, err := netpolicy.NewManager(netpolicy.Config{Subnet4: subnet, Upstream: []string{"127.0.0.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t)
	fdsBefore := openFDs(t)
	const jobs, parallel = 300, 6
	slots := make(chan int, parallel)
	for range parallel {
		slots <- newSlot(t)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range jobs {
		slot := <-slots
		wg.Go(func() {
			defer func() { slots <- slot }()
			sb, err := m.Prepare(t.Context(), netpolicy.Spec{ID: fmt.Sprintf("many-%d", i),
				Policy:   netpolicy.Policy{Mode: netpolicy.ModeAllowList, Allow: []string{"example.com"}},
				Platform: netpolicy.Platform{GRPC: "127.0.0.1:9"}})
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("job %d: prepare: %v", i, err))
				mu.Unlock()
				return
			}
			var out bytes.Buffer
			res, err := e.Run(t.Context(), executor.Spec{JobID: fmt.Sprintf("many-%d", i), Slot: slot, Network: sb, Output: &out,
				Argv: []string{"sh", "-c", "cat /etc/resolv.conf | grep -c nameserver"}})
			if _, cerr := sb.Close(); cerr != nil && err == nil {
				err = cerr
			}
			if err != nil || res.ExitCode != 0 || out.String() != "1\n" {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("job %d: %+v, %v, %q", i, res, err, out.String()))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	netpolicytest.WaitNoSubnetLinks(t, subnet)
	// Namespaces are held by descriptors, resolvers and forwarders by
	// sockets: none may be left open.
	if after := openFDs(t); after > fdsBefore+2 {
		t.Errorf("%d descriptors open before the jobs, %d after", fdsBefore, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
