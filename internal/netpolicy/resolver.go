package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// PlatformName is the name under which a sandbox reaches the platform's
// endpoints (its gateway address, where the agent forwards them).
// ".internal" is reserved for private use and never resolves publicly.
const PlatformName = "nimbus.internal"

// How long an answered address stays open in the sandbox's allow set:
// at least minAllowTTL, so that a client caching the answer for a while
// (Java does for 30 s) can still connect; at most maxAllowTTL.
const (
	minAllowTTL = 5 * time.Minute
	maxAllowTTL = 24 * time.Hour
	// upstreamTimeout bounds one upstream exchange.
	upstreamTimeout = 3 * time.Second
	// maxNames bounds the distinct names a report keeps.
	maxNames = 1024
)

// resolver is a sandbox's DNS server, on its gateway address. It answers
// only names its policy allows (and the platform's name), with A and AAAA
// records only; every other query is answered without being forwarded,
// so nothing the sandbox puts in a query leaves the machine unless the
// name is allowed. Answered addresses are opened in the sandbox's nftables
// allow set before the answer is sent; addresses in always-denied ranges
// are removed from answers (DNS rebinding opens nothing).
type resolver struct {
	policy compiled
	client netip.Addr // the sandbox's address: the only one served
	gw     netip.Addr
	// local are names answered with the gateway, like PlatformName (the
	// hosts the sandbox's interception serves).
	local    []string
	upstream []string
	table    *sandboxTable
	log      *slog.Logger

	udp, tcp *dns.Server
	// forwardHook, when set, sees every question forwarded (tests).
	forwardHook func(name string, qtype uint16)

	mu    sync.Mutex
	names map[nameKey]*apiv1.EgressName
	order []nameKey
	extra int // names not kept: over maxNames
}

type nameKey struct {
	name  string
	qtype uint16
}

// Verdicts of the names in a report.
const (
	VerdictAllowed  = apiv1.VerdictAllowed
	VerdictDenied   = apiv1.VerdictDenied
	VerdictUnlisted = apiv1.VerdictUnlisted
	VerdictRefused  = apiv1.VerdictRefused
)

func startResolver(pc net.PacketConn, ln net.Listener, r *resolver) {
	r.names = map[nameKey]*apiv1.EgressName{}
	r.udp = &dns.Server{PacketConn: pc, Handler: r, UDPSize: dns.DefaultMsgSize}
	r.tcp = &dns.Server{Listener: ln, Handler: r, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		MaxTCPQueries: 64}
	started := make(chan struct{}, 2)
	r.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	r.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() { _ = r.udp.ActivateAndServe() }()
	go func() { _ = r.tcp.ActivateAndServe() }()
	<-started
	<-started
}

func (r *resolver) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.udp.ShutdownContext(ctx)
	_ = r.tcp.ShutdownContext(ctx)
}

// ServeDNS answers one query.
func (r *resolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	resp := r.answer(w.RemoteAddr(), q)
	if resp == nil {
		return // not the sandbox's: no answer at all
	}
	_ = w.WriteMsg(resp)
}

func (r *resolver) answer(from net.Addr, q *dns.Msg) *dns.Msg {
	if ap, err := netip.ParseAddrPort(from.String()); err != nil || ap.Addr().Unmap() != r.client {
		return nil
	}
	resp := new(dns.Msg)
	resp.SetReply(q)
	resp.RecursionAvailable = true
	resp.Authoritative = false
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 || q.Question[0].Qclass != dns.ClassINET {
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	question := q.Question[0]
	qtype := question.Qtype
	name, err := canonicalName(question.Name)
	if err != nil {
		// Not a host name (too long a label, odd characters): the usual
		// shape of data smuggled in a query.
		r.record(strings.ToLower(question.Name), qtype, VerdictDenied, nil, nil)
		resp.Rcode = dns.RcodeNameError
		return resp
	}
	if name == PlatformName || slices.Contains(r.local, name) {
		if qtype == dns.TypeA {
			resp.Answer = append(resp.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
				A:   r.gw.AsSlice(),
			})
		}
		r.record(name, qtype, VerdictAllowed, []string{r.gw.String()}, nil)
		return resp
	}
	verdict := VerdictAllowed
	if !r.policy.allowsName(name) {
		if r.policy.mode != ModeAudit {
			r.record(name, qtype, VerdictDenied, nil, nil)
			resp.Rcode = dns.RcodeNameError
			return resp
		}
		verdict = VerdictUnlisted
	}
	if qtype != dns.TypeA && qtype != dns.TypeAAAA {
		// TXT, MX, ANY, NULL...: never forwarded. An empty answer (NODATA)
		// lets resolvers that ask for HTTPS or SVCB records move on.
		r.record(name, qtype, VerdictRefused, nil, nil)
		return resp
	}
	up, err := r.forward(name, qtype)
	if err != nil {
		r.log.Warn("dns upstream", "name", name, "err", err)
		resp.Rcode = dns.RcodeServerFailure
		return resp
	}
	resp.Rcode = up.Rcode
	var open []netip.Addr
	var answers, blocked []string
	ttl := uint32(maxAllowTTL / time.Second)
	for _, rr := range up.Answer {
		var a netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(v.AAAA.To16())
		case *dns.CNAME:
			resp.Answer = append(resp.Answer, v)
			continue
		default:
			continue
		}
		a = a.Unmap()
		if !a.IsValid() || deniedAddr(a) {
			blocked = append(blocked, a.String())
			continue
		}
		ttl = min(ttl, rr.Header().Ttl)
		open = append(open, a)
		answers = append(answers, a.String())
		resp.Answer = append(resp.Answer, rr)
	}
	if len(open) > 0 && verdict == VerdictAllowed {
		d := min(max(time.Duration(ttl)*time.Second, minAllowTTL), maxAllowTTL)
		if err := r.table.allowAddrs(open, d); err != nil {
			r.log.Error("open answered addresses in the sandbox's nftables set", "name", name, "err", err)
			resp.Answer, resp.Rcode = nil, dns.RcodeServerFailure
			return resp
		}
	}
	r.record(name, qtype, verdict, answers, blocked)
	return resp
}

// forward asks the upstream resolvers, over UDP then TCP when truncated.
// The query is built afresh: nothing of the sandbox's message but the
// name and type leaves.
func (r *resolver) forward(name string, qtype uint16) (*dns.Msg, error) {
	if r.forwardHook != nil {
		r.forwardHook(name, qtype)
	}
	if len(r.upstream) == 0 {
		return nil, errors.New("no upstream resolver configured")
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	var errs []error
	for _, server := range r.upstream {
		c := &dns.Client{Net: "udp", Timeout: upstreamTimeout}
		resp, _, err := c.Exchange(m, server)
		if err == nil && resp.Truncated {
			c.Net = "tcp"
			resp, _, err = c.Exchange(m, server)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		return resp, nil
	}
	return nil, errors.Join(errs...)
}

func (r *resolver) record(name string, qtype uint16, verdict string, answers, blocked []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := nameKey{name, qtype}
	rec, ok := r.names[k]
	if !ok {
		if len(r.names) >= maxNames {
			r.extra++
			return
		}
		rec = &apiv1.EgressName{Name: name, Type: dns.TypeToString[qtype], Verdict: verdict}
		if rec.Type == "" {
			rec.Type = fmt.Sprintf("TYPE%d", qtype)
		}
		r.names[k] = rec
		r.order = append(r.order, k)
	}
	rec.Count++
	rec.Verdict = verdict
	rec.Answers = mergeStrings(rec.Answers, answers)
	rec.Blocked = mergeStrings(rec.Blocked, blocked)
}

// records returns the names asked for, in the order first asked, and how
// many more were not kept.
func (r *resolver) records() ([]apiv1.EgressName, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]apiv1.EgressName, 0, len(r.order))
	for _, k := range r.order {
		out = append(out, *r.names[k])
	}
	return out, r.extra
}

func mergeStrings(have, add []string) []string {
	for _, s := range add {
		found := false
		for _, h := range have {
			if h == s {
				found = true
				break
			}
		}
		if !found && len(have) < 32 {
			have = append(have, s)
		}
	}
	return have
}
