package packets

// Class is one kind of packet in the mixed management-traffic set.
type Class struct {
	Name  string
	Frame []byte
	// Weight is how many of these one round of the set holds.
	Weight int
}

// Mixed is the mixed management-traffic set that the benchmarks run: a
// provisioning node's DHCP, TFTP, HTTP and xcatd traffic, an administrator's
// ssh and rsync, SNMP and IPMI polling, an ICMP error and traffic on no
// catalog port, weighted roughly as a provisioning burst carries them.
func Mixed() []Class {
	bmc := Addr("10.0.2.5")
	data := func(n int) Options { return Options{Payload: make([]byte, n), Seq: 1} }
	tftpData := UDP(MN, Node, 50000, 40001, Options{Payload: append([]byte{0, 3, 0, 1}, make([]byte, 512)...)})
	return []Class{
		{"dhcp-discover", DHCP(Addr("0.0.0.0"), Addr("255.255.255.255"), 68, 67, 1, 0xfeed, NodeMAC), 1},
		{"dhcp-offer", DHCP(MN, Addr("255.255.255.255"), 67, 68, 2, 0xfeed, NodeMAC), 1},
		{"tftp-rrq", UDP(Node, MN, 40001, 69, Options{Payload: []byte("\x00\x01pxelinux.0\x00octet\x00")}), 1},
		{"tftp-data", tftpData, 16},
		{"tftp-ack", UDP(Node, MN, 40001, 50000, Options{Payload: []byte{0, 4, 0, 1}}), 16},
		{"xcatd-syn", TCP(Node, MN, 40000, 3001, SYN, Options{Seq: 1000}), 1},
		{"xcatd-synack", TCP(MN, Node, 3001, 40000, SYNACK, Options{Seq: 5000}), 1},
		{"xcatd-data", TCP(Node, MN, 40000, 3001, PSH|ACK, data(300)), 4},
		{"xcatd-data-back", TCP(MN, Node, 3001, 40000, PSH|ACK, data(900)), 4},
		{"status-syn", TCP(Node, MN, 40003, 3002, SYN, Options{Seq: 77}), 1},
		{"status-synack", TCP(MN, Node, 3002, 40003, SYNACK, Options{}), 1},
		{"status-data", TCP(Node, MN, 40003, 3002, PSH|ACK, data(40)), 1},
		{"ssh-data", TCP(Node, MN, 40010, 22, PSH|ACK, data(100)), 6},
		{"rsync-data", TCP(MN, Node, 873, 40011, PSH|ACK, data(1400)), 6},
		{"http-data", TCP(MN, Node, 80, 40012, ACK, data(1400)), 24},
		{"http-ack", TCP(Node, MN, 40012, 80, ACK, Options{}), 12},
		{"snmp-get", UDP(MN, Addr("10.0.3.2"), 40020, 161, data(40)), 1},
		{"snmp-response", UDP(Addr("10.0.3.2"), MN, 161, 40020, data(120)), 1},
		{"ipmi-request", UDP(MN, bmc, 40021, 623, data(32)), 1},
		{"ipmi-response", UDP(bmc, MN, 623, 40021, data(48)), 1},
		{"icmp-unreachable", Unreachable(Router, 13, TCP(Node, MN, 40030, 3002, SYN, Options{})), 1},
		{"other-tcp-data", TCP(Node, Addr("192.0.2.10"), 40040, 443, PSH|ACK, data(600)), 4},
		{"other-udp", UDP(Node, Addr("192.0.2.10"), 40041, 5353, data(60)), 2},
	}
}

// MixedRound is one round of the mixed set, each class repeated by weight
// and interleaved, as a capture of a burst would hold them.
func MixedRound() [][]byte {
	classes := Mixed()
	var round [][]byte
	for left := true; left; {
		left = false
		for i := range classes {
			if classes[i].Weight > 0 {
				round = append(round, classes[i].Frame)
				classes[i].Weight--
				left = true
			}
		}
	}
	return round
}
