package capture

import (
	"net"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"

	"portwatch/catalog"
)

var (
	macA    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	ip4A    = net.IPv4(198, 18, 0, 1).To4()
	ip4B    = net.IPv4(198, 18, 0, 2).To4()
	ip6A    = net.ParseIP("2001:db8::1")
	ip6B    = net.ParseIP("2001:db8::2")
	payload = gopacket.Payload([]byte("some payload bytes"))
)

// frame serialises layers into a frame, computing lengths and checksums.
func frame(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	type checksummed interface {
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}
	for _, l := range ls {
		if c, ok := l.(checksummed); ok {
			for _, n := range ls {
				if ip, ok := n.(gopacket.NetworkLayer); ok {
					_ = c.SetNetworkLayerForChecksum(ip)
				}
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: t}
}

func dot1q(id uint16, next layers.EthernetType) *layers.Dot1Q {
	return &layers.Dot1Q{VLANIdentifier: id, Type: next}
}

func ipv4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: ip4B, DstIP: ip4A}
}

func ipv6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: ip6B, DstIP: ip6A}
}

func tcp(src, dst uint16, flags string) *layers.TCP {
	l := &layers.TCP{SrcPort: layers.TCPPort(src), DstPort: layers.TCPPort(dst), Seq: 1000, Window: 512}
	l.SYN = strings.Contains(flags, "S")
	l.ACK = strings.Contains(flags, "A")
	l.RST = strings.Contains(flags, "R")
	l.FIN = strings.Contains(flags, "F")
	l.PSH = strings.Contains(flags, "P")
	return l
}

func udp(src, dst uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(src), DstPort: layers.UDPPort(dst)}
}

// runFilter runs a filter, as the kernel gets it, in x/net/bpf's VM.
func runFilter(t *testing.T, raw []bpf.RawInstruction, pkt []byte) int {
	t.Helper()
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("the VM refuses the filter: %v", err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatalf("running the filter: %v", err)
	}
	return n
}

func builtinCatalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFilterAcceptsWhatTheTwinCounts(t *testing.T) {
	const snaplen = 2048
	filter, err := catalogFilter(builtinCatalog(t), snaplen)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("filter: %d instructions", len(filter))
	ipv4Options := ipv4(layers.IPProtocolTCP)
	ipv4Options.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	laterFragment := ipv4(layers.IPProtocolTCP)
	laterFragment.FragOffset = 185
	firstFragment := ipv4(layers.IPProtocolTCP)
	firstFragment.Flags = layers.IPv4MoreFragments
	icmp4 := func(typ uint8) gopacket.SerializableLayer {
		return &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 3)}
	}
	icmp6 := func(typ uint8) gopacket.SerializableLayer {
		return &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 4)}
	}
	cases := []struct {
		name   string
		frame  []byte
		accept bool
	}{
		{"tcp SYN to a non-catalog port", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(40000, 50123, "S")), true},
		{"tcp SYN-ACK from a non-catalog port", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 40000, "SA")), true},
		{"tcp RST from a non-catalog port", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 40000, "RA")), true},
		{"tcp data on non-catalog ports", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(40000, 50123, "PA"), payload), false},
		{"tcp pure ACK on non-catalog ports", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 40000, "A")), false},
		{"tcp FIN on non-catalog ports", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 40000, "FA")), false},
		{"tcp data to xcatd 3001", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 3001, "PA"), payload), true},
		{"tcp data from xcatd 3001", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(3001, 50123, "PA"), payload), true},
		{"tcp ACK to ssh 22", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 22, "A")), true},
		{"tcp data to rsync 873 with IPv4 options", frame(t, eth(layers.EthernetTypeIPv4), ipv4Options, tcp(50123, 873, "PA"), payload), true},
		{"tcp data on non-catalog ports with IPv4 options", frame(t, eth(layers.EthernetTypeIPv4), ipv4Options, tcp(50123, 40000, "PA"), payload), false},
		{"udp on non-catalog ports", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(50000, 50001), payload), true},
		{"udp to tftp 69", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(50000, 69), payload), true},
		{"icmp port unreachable", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolICMPv4), icmp4(3), payload), true},
		{"icmp echo request", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolICMPv4), icmp4(8), payload), false},
		{"ipv4 later fragment", frame(t, eth(layers.EthernetTypeIPv4), laterFragment, payload), true},
		{"ipv4 first fragment of non-catalog tcp data", frame(t, eth(layers.EthernetTypeIPv4), firstFragment, tcp(40000, 50123, "PA"), payload), false},
		{"arp", frame(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: macB, SourceProtAddress: ip4B, DstHwAddress: make([]byte, 6), DstProtAddress: ip4A}), false},
		{"ipv6 tcp data to ssh 22", frame(t, eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolTCP), tcp(50123, 22, "PA"), payload), true},
		{"ipv6 tcp data on non-catalog ports", frame(t, eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolTCP), tcp(50123, 40000, "PA"), payload), false},
		{"ipv6 tcp SYN", frame(t, eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolTCP), tcp(50123, 40000, "S")), true},
		{"ipv6 udp", frame(t, eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolUDP), udp(546, 547), payload), true},
		{"icmpv6 destination unreachable", frame(t, eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolICMPv6), icmp6(1), payload), true},
		{"icmpv6 echo request", frame(t, eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolICMPv6), icmp6(128), payload), false},
		{"ipv6 hop-by-hop header", frame(t, eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolIPv6HopByHop), payload), true},
		{"802.1Q tcp data to 3002", frame(t, eth(layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 3002, "PA"), payload), true},
		{"802.1Q tcp data on non-catalog ports", frame(t, eth(layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 40000, "PA"), payload), false},
		{"802.1Q ipv6 tcp SYN", frame(t, eth(layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv6), ipv6(layers.IPProtocolTCP), tcp(50123, 40000, "S")), true},
		{"QinQ tcp data to 3001", frame(t, eth(layers.EthernetTypeQinQ), dot1q(100, layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 3001, "PA"), payload), true},
		{"QinQ tcp data on non-catalog ports", frame(t, eth(layers.EthernetTypeQinQ), dot1q(100, layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 40000, "PA"), payload), false},
		{"QinQ udp", frame(t, eth(layers.EthernetTypeQinQ), dot1q(100, layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(68, 67), payload), true},
		{"three tags", frame(t, eth(layers.EthernetTypeQinQ), dot1q(100, layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeDot1Q), dot1q(7, layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 40000, "PA"), payload), true},
		{"other IP protocol (GRE)", frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolGRE), payload), false},
		{"runt frame", []byte{1, 2, 3}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := runFilter(t, filter, c.frame)
			// The kernel keeps min(returned, frame length) bytes.
			want := 0
			if c.accept {
				want = snaplen
			}
			if got != want {
				t.Errorf("filter returned %d, want %d (accept=%v)", got, want, c.accept)
			}
		})
	}
}

func TestFilterFollowsLearnedPorts(t *testing.T) {
	c := builtinCatalog(t)
	data := frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, 40001, "PA"), payload)
	before, err := catalogFilter(c, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if runFilter(t, before, data) != 0 {
		t.Fatal("data to 40001 accepted before mountd's port was learned")
	}
	learned, err := c.WithLearnedPort("mount-tcp/tcp", 40001)
	if err != nil {
		t.Fatal(err)
	}
	after, err := catalogFilter(learned, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if runFilter(t, after, data) == 0 {
		t.Fatal("data to the learned mountd port 40001 dropped")
	}
}

func TestFilterPortRanges(t *testing.T) {
	bindings := []catalog.PortBinding{
		{Proto: catalog.TCP, Port: 3001}, {Proto: catalog.TCP, Port: 3003}, {Proto: catalog.TCP, Port: 3002},
		{Proto: catalog.UDP, Port: 5000}, {Proto: catalog.TCP, Port: 22},
	}
	for p := uint16(6000); p <= 9000; p++ {
		bindings = append(bindings, catalog.PortBinding{Proto: catalog.TCP, Port: p})
	}
	ranges := tcpPortRanges(bindings)
	want := []portRange{{22, 22}, {3001, 3003}, {6000, 9000}}
	if len(ranges) != len(want) {
		t.Fatalf("ranges %v, want %v", ranges, want)
	}
	for i := range want {
		if ranges[i] != want[i] {
			t.Fatalf("ranges %v, want %v", ranges, want)
		}
	}
	filter, err := buildFilter(ranges, 1500)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		port   uint16
		accept bool
	}{{21, false}, {22, true}, {23, false}, {3000, false}, {3001, true}, {3003, true}, {3004, false}, {5000, false}, {5999, false}, {6000, true}, {7777, true}, {9000, true}, {9001, false}} {
		got := runFilter(t, filter, frame(t, eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(50123, c.port, "PA"), payload)) != 0
		if got != c.accept {
			t.Errorf("tcp data to %d: accepted %v, want %v", c.port, got, c.accept)
		}
	}

	// Many separate ports still make a filter the kernel takes, or a
	// clear error when they cannot.
	var many []portRange
	for p := uint16(1); len(many) < 1000; p += 2 {
		many = append(many, portRange{p, p})
	}
	if _, err := buildFilter(many, 1500); err != nil {
		t.Errorf("1000 separate ports: %v", err)
	}
	for p := uint16(2001); len(many) < 2100; p += 2 {
		many = append(many, portRange{p, p})
	}
	if _, err := buildFilter(many, 1500); err == nil || !strings.Contains(err.Error(), "too many separate TCP ports") {
		t.Errorf("2100 separate ports: error %v, want too many", err)
	}
}
