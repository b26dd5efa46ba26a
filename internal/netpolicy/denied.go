package netpolicy

import "net/netip"

// AlwaysDenied are the destinations no sandbox may reach, whatever its
// policy says: the machine's own and its neighbours' (loopback, link-local
// with the cloud metadata services on it, RFC 1918, CGNAT, IPv6 unique
// local), and addresses that are not unicast. The host's own public
// addresses and other sandboxes are refused by the host's firewall (see
// Firewall), which knows them.
var AlwaysDenied = mustPrefixes(
	// IPv4
	"0.0.0.0/8",      // "this network"
	"10.0.0.0/8",     // RFC 1918
	"100.64.0.0/10",  // CGNAT (RFC 6598), holds Alibaba's 100.100.100.200
	"127.0.0.0/8",    // loopback
	"169.254.0.0/16", // link-local: 169.254.169.254 (AWS, GCP, Azure...)
	"172.16.0.0/12",  // RFC 1918
	"192.0.0.0/24",   // IETF protocol assignments
	"192.168.0.0/16", // RFC 1918
	"198.18.0.0/15",  // benchmarking networks, used inside some clouds
	"224.0.0.0/4",    // multicast
	"240.0.0.0/4",    // reserved, and the broadcast address
	// IPv6
	"::/127",         // unspecified and loopback
	"::ffff:0:0/96",  // IPv4-mapped: an IPv4 destination in disguise
	"64:ff9b:1::/48", // local-use NAT64 (RFC 8215): private IPv4 behind
	"100::/64",       // discard-only
	"fc00::/7",       // unique local, holds AWS's fd00:ec2::254
	"fe80::/10",      // link-local
	"ff00::/8",       // multicast
)

// deniedAddr reports whether a is in an always-denied range.
func deniedAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range AlwaysDenied {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}
