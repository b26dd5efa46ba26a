package netpolicy

// Report is what a sandbox did on the network: the names it asked for,
// the connections it opened or tried, and its bytes. It is stored with the
// job; `nimbus ctl egress suggest` turns audit reports into allow-lists.
type Report struct {
	Mode Mode `json:"mode"`
	// Names asked for, in the order first asked.
	Names []NameRecord `json:"names,omitempty"`
	// NamesDropped counts names not kept (past the report's bound).
	NamesDropped int `json:"names_dropped,omitempty"`
	// Allowed are connections the policy allowed.
	Allowed []Conn `json:"allowed,omitempty"`
	// Refused are connections refused: always-denied ranges, other
	// resolvers, and (outside audit mode) everything not allowed.
	Refused []Conn `json:"refused,omitempty"`
	// Unlisted are connections audit mode let through that the
	// allow-list would have refused.
	Unlisted []Conn `json:"unlisted,omitempty"`
	// BytesOut and BytesIn count what crossed the sandbox's link.
	BytesOut uint64 `json:"bytes_out"`
	BytesIn  uint64 `json:"bytes_in"`
}

// Conn is a destination the sandbox opened connections to (or tried).
type Conn struct {
	Addr  string `json:"addr"`
	Proto string `json:"proto"`
	Port  uint16 `json:"port,omitempty"`
	// Count is how many new connections (or, for UDP and ICMP, new
	// flows) went to it.
	Count uint64 `json:"count"`
}
