// Package e2e holds portwatch's end-to-end tests: the portwatch binary,
// built from this checkout, watches the lab's management network while real
// clients provision through a real nftables firewall, and its verdicts must
// be what each firewall scenario's header says (lab/scenarios/*.nft).
//
// Every test observes at the two places the lab offers: the management
// node's interface and the firewall's interface towards the nodes, with the
// kernel backend (XDP and TC), the capture backend (AF_PACKET) and a
// tcpdump capture analysed afterwards, and checks that all of them agree.
// The tests need root; they skip without it, and fail instead when
// PORTWATCH_REQUIRE_PRIV=1.
package e2e
