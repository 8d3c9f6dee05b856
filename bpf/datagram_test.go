package bpf_test

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"portwatch/bpf"
	"portwatch/bpf/packets"
)

func TestUDPDatagram(t *testing.T) {
	payload := packets.RPCGetPortReply(0x42, 20048)
	for name, frame := range map[string][]byte{
		"ipv4": packets.UDP(packets.MN, packets.Node, 111, 700, packets.Options{Payload: payload}),
		"ipv6": packets.UDP(packets.MN6, packets.Node6, 111, 700, packets.Options{Payload: payload}),
		"qinq": packets.UDP(packets.MN, packets.Node, 111, 700, packets.Options{Payload: payload,
			VLANs: []packets.VLAN{{ID: 1, TPID: layers.EthernetTypeQinQ}, {ID: 2}}}),
	} {
		d, ok := bpf.UDPDatagram(frame)
		if !ok || d.Sport != 111 || d.Dport != 700 || !bytes.Equal(d.Payload, payload) || !d.Src.IsValid() {
			t.Errorf("%s: %+v %v", name, d, ok)
		}
	}
	for name, frame := range map[string][]byte{
		"tcp":      packets.TCP(packets.MN, packets.Node, 111, 700, packets.SYN, packets.Options{}),
		"fragment": packets.UDP(packets.MN, packets.Node, 111, 700, packets.Options{FragOffset: 8}),
		"arp":      packets.ARP(),
		"runt":     packets.Truncate(packets.ARP(), 10),
		"cut udp":  packets.Truncate(packets.UDP(packets.MN, packets.Node, 111, 700, packets.Options{}), 14+20+4),
	} {
		if d, ok := bpf.UDPDatagram(frame); ok {
			t.Errorf("%s: read %+v", name, d)
		}
	}
}
