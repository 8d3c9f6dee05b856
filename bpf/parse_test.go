package bpf

import "testing"

// The Go parse counters must index the C enum's slots one for one.
func TestParseCountersMatchC(t *testing.T) {
	if int(NumParseCounters) != int(PortwatchParseCounterPC_COUNT) {
		t.Fatalf("Go has %d parse counters, C has %d", NumParseCounters, PortwatchParseCounterPC_COUNT)
	}
	pairs := []struct {
		goSide ParseCounter
		cSide  PortwatchParseCounter
	}{
		{ParsePackets, PortwatchParseCounterPC_PACKETS},
		{ParseNonIP, PortwatchParseCounterPC_NON_IP},
		{ParseVLAN, PortwatchParseCounterPC_VLAN},
		{ParseQinQ, PortwatchParseCounterPC_QINQ},
		{ParseVLANTooDeep, PortwatchParseCounterPC_VLAN_TOO_DEEP},
		{ParseTruncEthernet, PortwatchParseCounterPC_TRUNC_ETHERNET},
		{ParseTruncVLAN, PortwatchParseCounterPC_TRUNC_VLAN},
		{ParseTruncIPv4, PortwatchParseCounterPC_TRUNC_IPV4},
		{ParseBadIPv4Header, PortwatchParseCounterPC_BAD_IPV4HEADER},
		{ParseIPv4Options, PortwatchParseCounterPC_IPV4OPTIONS},
		{ParseTruncIPv6, PortwatchParseCounterPC_TRUNC_IPV6},
		{ParseIPv6ExtHeaders, PortwatchParseCounterPC_IPV6EXT_HEADERS},
		{ParseIPv6ExtTooDeep, PortwatchParseCounterPC_IPV6EXT_TOO_DEEP},
		{ParseTruncIPv6Ext, PortwatchParseCounterPC_TRUNC_IPV6EXT},
		{ParseFragFirst, PortwatchParseCounterPC_FRAG_FIRST},
		{ParseFragLater, PortwatchParseCounterPC_FRAG_LATER},
		{ParseTruncTCP, PortwatchParseCounterPC_TRUNC_TCP},
		{ParseBadTCPHeader, PortwatchParseCounterPC_BAD_TCP_HEADER},
		{ParseTruncUDP, PortwatchParseCounterPC_TRUNC_UDP},
		{ParseBadUDPLength, PortwatchParseCounterPC_BAD_UDP_LENGTH},
		{ParseTruncICMP, PortwatchParseCounterPC_TRUNC_ICMP},
		{ParseICMPNotUnreachable, PortwatchParseCounterPC_ICMP_NOT_UNREACHABLE},
		{ParseTruncICMPInner, PortwatchParseCounterPC_TRUNC_ICMP_INNER},
		{ParseICMPUnmatched, PortwatchParseCounterPC_ICMP_UNMATCHED},
		{ParseOtherL4, PortwatchParseCounterPC_OTHER_L4},
		{ParseTruncDHCP, PortwatchParseCounterPC_TRUNC_DHCP},
		{ParseNonCatalog, PortwatchParseCounterPC_NON_CATALOG},
		{ParseExchangeNew, PortwatchParseCounterPC_EXCHANGE_NEW},
		{ParseEphemeralNew, PortwatchParseCounterPC_EPHEMERAL_NEW},
		{ParseUnexpectedNew, PortwatchParseCounterPC_UNEXPECTED_NEW},
		{ParseFlowNew, PortwatchParseCounterPC_FLOW_NEW},
		{ParseMapUpdateFailed, PortwatchParseCounterPC_MAP_UPDATE_FAILED},
	}
	for _, p := range pairs {
		if int(p.goSide) != int(p.cSide) {
			t.Errorf("%s is %d in Go and %d in C", p.goSide, p.goSide, p.cSide)
		}
	}
	for i, name := range ParseCounterNames {
		if name == "" {
			t.Errorf("parse counter %d has no name", i)
		}
	}
}
