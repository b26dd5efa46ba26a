package netpolicy

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// FuzzResolverAnswer feeds the resolver any message a sandbox could send.
// It must answer without panicking, only its own sandbox, never forward a
// name the policy does not allow, and never forward anything but A and
// AAAA questions.
func FuzzResolverAnswer(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"allowed.test.", dns.TypeA}, {"nimbus.internal.", dns.TypeA}, {"x.wild.test.", dns.TypeTXT}, {"other.test.", dns.TypeAAAA}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b, true)
	}
	pol, err := Policy{Mode: ModeAllowList, Allow: []string{"allowed.test", "*.wild.test"}}.compile()
	if err != nil {
		f.Fatal(err)
	}
	client := netip.MustParseAddr("10.213.0.2")
	f.Fuzz(func(t *testing.T, data []byte, fromSandbox bool) {
		q := new(dns.Msg)
		if err := q.Unpack(data); err != nil {
			return
		}
		forwarded := 0
		r := &resolver{policy: pol, client: client, gw: netip.MustParseAddr("10.213.0.1"), log: slog.New(slog.DiscardHandler),
			names: map[nameKey]*apiv1.EgressName{}}
		r.forwardHook = func(name string, qtype uint16) {
			forwarded++
			if !pol.allowsName(name) {
				t.Fatalf("forwarded %q, which the policy does not allow", name)
			}
			if qtype != dns.TypeA && qtype != dns.TypeAAAA {
				t.Fatalf("forwarded a %s question", dns.TypeToString[qtype])
			}
		}
		from := &net.UDPAddr{IP: client.AsSlice(), Port: 5353}
		if !fromSandbox {
			from.IP = net.IPv4(10, 213, 0, 6)
		}
		resp := r.answer(from, q)
		if !fromSandbox && resp != nil {
			t.Fatal("answered a client that is not the sandbox")
		}
		if resp != nil {
			if _, err := resp.Pack(); err != nil {
				t.Fatalf("answer does not pack: %v", err)
			}
		}
	})
}
