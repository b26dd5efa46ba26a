package pki

import (
	"strings"
	"testing"
	"time"
)

// An expired server certificate is replaced in place: the next handshake
// succeeds with the renewed one, and a certificate for another identity is
// refused as a renewal.
func TestCertHolderRenews(t *testing.T) {
	ca := mustCA(t)
	agent := AgentIdentity("acme", "agent-1")
	alice := UserIdentity("acme", "alice")
	expired := mustIssue(t, ca, agent, IssueOptions{NotBefore: time.Now().Add(-48 * time.Hour), TTL: time.Hour})
	h, err := NewCertHolder(expired)
	if err != nil {
		t.Fatal(err)
	}
	if h.Identity() != agent {
		t.Fatalf("identity %s", h.Identity())
	}
	server := ServerConfigFrom(ca.Pool(), h, nil)
	client := ClientConfig(ca.Pool(), mustIssue(t, ca, alice, IssueOptions{}), agent)
	if _, cerr, _ := handshake(t, server, client); cerr == nil || !strings.Contains(cerr.Error(), "expired") {
		t.Fatalf("handshake with the expired certificate: %v, want an expiry error", cerr)
	}
	if err := h.Set(mustIssue(t, ca, AgentIdentity("acme", "agent-2"), IssueOptions{})); err == nil {
		t.Fatal("a certificate for another agent was taken as a renewal")
	}
	renewed := mustIssue(t, ca, agent, IssueOptions{})
	if err := h.Set(renewed); err != nil {
		t.Fatal(err)
	}
	if !h.Leaf().NotAfter.Equal(renewed.Leaf.NotAfter) {
		t.Errorf("leaf expires %v, want %v", h.Leaf().NotAfter, renewed.Leaf.NotAfter)
	}
	serr, cerr, seen := handshake(t, server, client)
	if serr != nil || cerr != nil || seen != alice {
		t.Fatalf("handshake after renewal: server %v, client %v, saw %s", serr, cerr, seen)
	}
}
