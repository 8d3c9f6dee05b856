package bpf

// ParseCounter indexes Snapshot.Parse: what the parser made of each packet,
// so that nothing it skips is lost silently. The order is the C enum
// parse_counter in portwatch.h; a test checks that the two agree.
type ParseCounter int

// Parse outcomes. A packet can add to several (VLAN-tagged and a later fragment).
const (
	ParsePackets            ParseCounter = iota // every packet the hooks saw
	ParseNonIP                                  // neither IPv4 nor IPv6 (ARP, LLDP, ...)
	ParseVLAN                                   // carried one 802.1Q/802.1ad tag
	ParseQinQ                                   // carried two tags
	ParseVLANTooDeep                            // more than two tags: not parsed further
	ParseTruncEthernet                          // shorter than an Ethernet header
	ParseTruncVLAN                              // a tag cut short
	ParseTruncIPv4                              // IPv4 header cut short
	ParseBadIPv4Header                          // IHL < 5 or a version that is not 4
	ParseIPv4Options                            // IHL > 5: options skipped
	ParseTruncIPv6                              // IPv6 header cut short
	ParseIPv6ExtHeaders                         // walked one or more extension headers
	ParseIPv6ExtTooDeep                         // more extension headers than the walk allows
	ParseTruncIPv6Ext                           // an extension header cut short
	ParseFragFirst                              // first fragment: ports present
	ParseFragLater                              // later fragment: no ports, not attributed
	ParseTruncTCP                               // TCP header cut short
	ParseBadTCPHeader                           // TCP data offset < 5
	ParseTruncUDP                               // UDP header cut short
	ParseBadUDPLength                           // UDP length < 8
	ParseTruncICMP                              // ICMP header cut short
	ParseICMPNotUnreachable                     // ICMP other than destination unreachable
	ParseTruncICMPInner                         // the quoted packet of an unreachable cut short
	ParseICMPUnmatched                          // an unreachable quoting no catalog or tracked exchange
	ParseOtherL4                                // neither TCP, UDP, ICMP nor ICMPv6
	ParseTruncDHCP                              // a BOOTP message too short to pair
	ParseNonCatalog                             // TCP/UDP on no catalog port
	ParseExchangeNew                            // a new exchange entered the table
	ParseEphemeralNew                           // a TFTP-style request was remembered for its reply
	ParseUnexpectedNew                          // a new unexpected open port entered the table
	ParseFlowNew                                // a non-catalog UDP flow was remembered
	ParseMapUpdateFailed                        // a map insert failed (full, or no memory)
	NumParseCounters
)

// ParseCounterNames are the stable names of the parse counters, for metrics
// and reports.
var ParseCounterNames = [NumParseCounters]string{
	ParsePackets:            "packets",
	ParseNonIP:              "non_ip",
	ParseVLAN:               "vlan",
	ParseQinQ:               "qinq",
	ParseVLANTooDeep:        "vlan_too_deep",
	ParseTruncEthernet:      "truncated_ethernet",
	ParseTruncVLAN:          "truncated_vlan",
	ParseTruncIPv4:          "truncated_ipv4",
	ParseBadIPv4Header:      "bad_ipv4_header",
	ParseIPv4Options:        "ipv4_options",
	ParseTruncIPv6:          "truncated_ipv6",
	ParseIPv6ExtHeaders:     "ipv6_ext_headers",
	ParseIPv6ExtTooDeep:     "ipv6_ext_too_deep",
	ParseTruncIPv6Ext:       "truncated_ipv6_ext",
	ParseFragFirst:          "fragment_first",
	ParseFragLater:          "fragment_later",
	ParseTruncTCP:           "truncated_tcp",
	ParseBadTCPHeader:       "bad_tcp_header",
	ParseTruncUDP:           "truncated_udp",
	ParseBadUDPLength:       "bad_udp_length",
	ParseTruncICMP:          "truncated_icmp",
	ParseICMPNotUnreachable: "icmp_not_unreachable",
	ParseTruncICMPInner:     "truncated_icmp_inner",
	ParseICMPUnmatched:      "icmp_unmatched",
	ParseOtherL4:            "other_l4",
	ParseTruncDHCP:          "truncated_dhcp",
	ParseNonCatalog:         "non_catalog",
	ParseExchangeNew:        "exchange_new",
	ParseEphemeralNew:       "ephemeral_new",
	ParseUnexpectedNew:      "unexpected_new",
	ParseFlowNew:            "flow_new",
	ParseMapUpdateFailed:    "map_update_failed",
}

func (c ParseCounter) String() string {
	if c >= 0 && c < NumParseCounters {
		return ParseCounterNames[c]
	}
	return "unknown"
}
