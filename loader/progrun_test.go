package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
	"portwatch/catalog"
)

// Verdicts the observer must return for every frame: it never changes traffic.
const (
	xdpPass     = 2          // XDP_PASS
	tcActUnspec = 0xffffffff // TC_ACT_UNSPEC (-1) as the uint32 the run returns
)

// hosts are one case's addresses: unique per case, so that the cases share
// one loaded program (loading takes most of a second) without seeing each
// other's table entries.
type hosts struct {
	c, s, r netip.Addr // client, server, and a router that sends ICMP errors
	mac     net.HardwareAddr
	v6      bool
}

func hostsFor(i int, v6 bool) hosts {
	h := hosts{v6: v6, mac: net.HardwareAddr{0x02, 0x50, 0x57, 0, byte(i >> 8), byte(i)}}
	if v6 {
		base := [16]byte{0xfd, 0x00, 0x50, 0x57, 0, 0, byte(i >> 8), byte(i)}
		h.c, h.s, h.r = addr6(base, 1), addr6(base, 2), addr6(base, 0xfe)
	} else {
		h.c = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		h.s = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 2})
		h.r = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 254})
	}
	return h
}

func addr6(base [16]byte, last byte) netip.Addr {
	base[15] = last
	return netip.AddrFrom16(base)
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

type (
	svcs = map[string]bpf.ServiceCounters
	pcs  = map[bpf.ParseCounter]uint64
	exs  = map[string]bpf.ExchangeCounters
	uns  = map[string]bpf.UnexpectedCounters
)

func ipEx(svc string, client, server netip.Addr) string {
	return fmt.Sprintf("%s %s->%s", svc, client, server)
}

func dhcpEx(mac net.HardwareAddr) string { return fmt.Sprintf("bootps/udp dhcp %x", []byte(mac)) }

func unEx(proto string, server netip.Addr, port uint16) string {
	return fmt.Sprintf("%s %s", proto, netip.AddrPortFrom(server, port))
}

type family int

const (
	v4Only family = iota
	v6Only
	v4And6
)

type frameCase struct {
	name   string
	family family
	frames func(tb testing.TB, h hosts) [][]byte
	// want lists what the frames add; the packets parse counter, which
	// every frame adds to, is checked without being listed.
	want func(h hosts) delta
	// learn is how many frames the programs copy to userspace, in order
	// of the frames that are; learnFrames picks those frames.
	learnFrames []int
	// tcRefused marks frames whose network header is incomplete:
	// BPF_PROG_TEST_RUN refuses them for a TC program (EINVAL), as the
	// stack never sends one. Only XDP can be shown them.
	tcRefused bool
}

// rpcGetport is an ONC RPC call to rpcbind's GETPORT (program 100000,
// version 2, procedure 3) for mountd (100005 v3 udp).
var rpcGetport = []byte{
	0x50, 0x57, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0x86, 0xa0, 0, 0, 0, 2, 0, 0, 0, 3,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 1, 0x86, 0xa5, 0, 0, 0, 3, 0, 0, 0, 17, 0, 0, 0, 0,
}

// rpcGetportReply says mountd listens on port 20048.
var rpcGetportReply = []byte{
	0x50, 0x57, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x4e, 0x50,
}

func frameCases() []frameCase {
	var cases []frameCase
	add := func(c ...frameCase) { cases = append(cases, c...) }

	// TCP requests and replies on several catalog services.
	for _, svc := range []struct {
		key  string
		port uint16
	}{{"xcatdport/tcp", 3001}, {"xcatiport/tcp", 3002}, {"ssh-tcp/tcp", 22}, {"rsync/tcp", 873}, {"www-tcp/tcp", 80}} {
		add(frameCase{
			name:   fmt.Sprintf("tcp handshake %d", svc.port),
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					tcpFrame(tb, ap(h.c, 40000), ap(h.s, svc.port), flagSYN, 1000, nil),
					tcpFrame(tb, ap(h.s, svc.port), ap(h.c, 40000), flagSYNACK, 5000, nil),
					tcpFrame(tb, ap(h.c, 40000), ap(h.s, svc.port), flagACK, 1001, nil),
					tcpFrame(tb, ap(h.c, 40000), ap(h.s, svc.port), flagPSHACK, 1001, []byte("GET / HTTP/1.0\r\n\r\n")),
					tcpFrame(tb, ap(h.s, svc.port), ap(h.c, 40000), flagPSHACK, 5001, []byte("HTTP/1.0 200 OK\r\n\r\n")),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{svc.key: {Packets: 5, Requests: 3, Replies: 2, SYN: 1, SYNACK: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx(svc.key, h.c, h.s): {Attempts: 1, Answers: 1}},
				}
			},
		})
	}
	add(
		frameCase{
			name:   "syn retransmit is one attempt",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				syn := tcpFrame(tb, ap(h.c, 40001), ap(h.s, 3001), flagSYN, 7777, nil)
				return [][]byte{syn, syn, syn}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"xcatdport/tcp": {Packets: 3, Requests: 3, SYN: 3}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("xcatdport/tcp", h.c, h.s): {Attempts: 1, Retransmits: 2}},
				}
			},
		},
		frameCase{
			name:   "syns from several ports of one client are attempts of one exchange",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					tcpFrame(tb, ap(h.c, 40001), ap(h.s, 3002), flagSYN, 100, nil),
					tcpFrame(tb, ap(h.c, 40002), ap(h.s, 3002), flagSYN, 100, nil),
					tcpFrame(tb, ap(h.c, 40002), ap(h.s, 3002), flagSYN, 900, nil),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"xcatiport/tcp": {Packets: 3, Requests: 3, SYN: 3}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("xcatiport/tcp", h.c, h.s): {Attempts: 3}},
				}
			},
		},
		frameCase{
			name:   "rst from the server rejects the syn",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					tcpFrame(tb, ap(h.c, 40003), ap(h.s, 873), flagSYN, 1, nil),
					rstAnswer(tb, ap(h.s, 873), ap(h.c, 40003), 1),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"rsync/tcp": {Packets: 2, Requests: 1, Replies: 1, SYN: 1, RST: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("rsync/tcp", h.c, h.s): {Attempts: 1, Resets: 1}},
				}
			},
		},
		frameCase{
			// A SYN with data (TCP Fast Open): the reset acknowledges
			// the data too.
			name:   "rst answering a syn that carried data rejects it",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					tcpFrame(tb, ap(h.c, 40007), ap(h.s, 873), flagSYN, 900, make([]byte, 100)),
					rstAnswer(tb, ap(h.s, 873), ap(h.c, 40007), 900+100),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"rsync/tcp": {Packets: 2, Requests: 1, Replies: 1, SYN: 1, RST: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("rsync/tcp", h.c, h.s): {Attempts: 1, Resets: 1}},
				}
			},
		},
		frameCase{
			// A server that forgot an old connection resets it while
			// the client's new SYN waits: that reset answers no SYN of
			// the exchange, nor does one acknowledging another sequence.
			name:   "rst of another connection or sequence does not reject the syn",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					tcpFrame(tb, ap(h.c, 40005), ap(h.s, 873), flagSYN, 500, nil),
					rstAnswer(tb, ap(h.s, 873), ap(h.c, 39000), 500),
					rstAnswer(tb, ap(h.s, 873), ap(h.c, 40005), 77),
					tcpFrame(tb, ap(h.s, 873), ap(h.c, 40005), flagRST, 0, nil),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"rsync/tcp": {Packets: 4, Requests: 1, Replies: 3, SYN: 1, RST: 3}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("rsync/tcp", h.c, h.s): {Attempts: 1}},
				}
			},
		},
		frameCase{
			name:   "rst from the server with no exchange makes none",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{rstAnswer(tb, ap(h.s, 873), ap(h.c, 40006), 500)}
			},
			want: func(h hosts) delta {
				return delta{services: svcs{"rsync/tcp": {Packets: 1, Replies: 1, RST: 1}}}
			},
		},
		frameCase{
			name:   "rst from the client touches no exchange",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{tcpFrame(tb, ap(h.c, 40004), ap(h.s, 22), flagRST, 1, nil)}
			},
			want: func(h hosts) delta {
				return delta{services: svcs{"ssh-tcp/tcp": {Packets: 1, Requests: 1, RST: 1}}}
			},
		},
		frameCase{
			name:   "syn-ack without a seen syn is an answer",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{tcpFrame(tb, ap(h.s, 22), ap(h.c, 40005), flagSYNACK, 1, nil)}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"ssh-tcp/tcp": {Packets: 1, Replies: 1, SYNACK: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("ssh-tcp/tcp", h.c, h.s): {Answers: 1}},
				}
			},
		},
		frameCase{
			name:   "rsh from a privileged port and syslog from another share tcp/514",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					tcpFrame(tb, ap(h.c, 1022), ap(h.s, 514), flagSYN, 1, nil),
					tcpFrame(tb, ap(h.s, 514), ap(h.c, 1022), flagSYNACK, 1, nil),
					tcpFrame(tb, ap(h.c, 40006), ap(h.s, 514), flagSYN, 1, nil),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services: svcs{
						"shell/tcp":    {Packets: 2, Requests: 1, Replies: 1, SYN: 1, SYNACK: 1},
						"rsyslogd/tcp": {Packets: 1, Requests: 1, SYN: 1},
					},
					parse: pcs{bpf.ParseExchangeNew: 2},
					exchanges: exs{
						ipEx("shell/tcp", h.c, h.s):    {Attempts: 1, Answers: 1},
						ipEx("rsyslogd/tcp", h.c, h.s): {Attempts: 1},
					},
				}
			},
		},
		frameCase{
			name:   "syn-ack from a port in no row is an unexpected open port",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					tcpFrame(tb, ap(h.c, 40007), ap(h.s, 8080), flagSYN, 1, nil),
					tcpFrame(tb, ap(h.s, 8080), ap(h.c, 40007), flagSYNACK, 1, nil),
					tcpFrame(tb, ap(h.s, 8080), ap(h.c, 40007), flagSYNACK, 1, nil),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:   svcs{"none": {Packets: 3, SYN: 1, SYNACK: 2}},
					parse:      pcs{bpf.ParseNonCatalog: 3, bpf.ParseUnexpectedNew: 1},
					unexpected: uns{unEx("tcp", h.s, 8080): {Answers: 2, Client: h.c}},
				}
			},
		},
	)

	// UDP request-reply services.
	for _, svc := range []struct {
		key  string
		port uint16
	}{{"snmp/udp", 161}, {"ipmi/udp", 623}, {"xcatdport/udp", 3001}} {
		add(frameCase{
			name:   fmt.Sprintf("udp request and reply %d", svc.port),
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					udpFrame(tb, ap(h.c, 41000), ap(h.s, svc.port), []byte("request")),
					udpFrame(tb, ap(h.c, 41000), ap(h.s, svc.port), []byte("request again")),
					udpFrame(tb, ap(h.s, svc.port), ap(h.c, 41000), []byte("reply")),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{svc.key: {Packets: 3, Requests: 2, Replies: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx(svc.key, h.c, h.s): {Attempts: 2, Answers: 1}},
				}
			},
		})
	}
	add(
		frameCase{
			name:   "syslog over udp is one-way",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{udpFrame(tb, ap(h.c, 41001), ap(h.s, 514), []byte("<13>portwatch: test"))}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"rsyslogd/udp": {Packets: 1, Requests: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("rsyslogd/udp", h.c, h.s): {Attempts: 1}},
				}
			},
		},
		frameCase{
			name:   "udp answered from a port in no row is an unexpected open port",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					udpFrame(tb, ap(h.c, 41002), ap(h.s, 5353), []byte("query")),
					udpFrame(tb, ap(h.c, 41002), ap(h.s, 5353), []byte("query again")),
					udpFrame(tb, ap(h.s, 5353), ap(h.c, 41002), []byte("answer")),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:   svcs{"none": {Packets: 3}},
					parse:      pcs{bpf.ParseNonCatalog: 3, bpf.ParseFlowNew: 1, bpf.ParseUnexpectedNew: 1},
					unexpected: uns{unEx("udp", h.s, 5353): {Answers: 1, Client: h.c}},
				}
			},
		},
		frameCase{
			name:   "udp from the higher end first: the lower end's port answered",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					udpFrame(tb, ap(h.s, 41004), ap(h.c, 7000), []byte("query")),
					udpFrame(tb, ap(h.c, 7000), ap(h.s, 41004), []byte("answer")),
					udpFrame(tb, ap(h.c, 7000), ap(h.s, 41004), []byte("answer again")),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:   svcs{"none": {Packets: 3}},
					parse:      pcs{bpf.ParseNonCatalog: 3, bpf.ParseFlowNew: 1, bpf.ParseUnexpectedNew: 1},
					unexpected: uns{unEx("udp", h.c, 7000): {Answers: 2, Client: h.s}},
				}
			},
		},
		frameCase{
			name:   "udp from a port to itself: the second datagram answers the first",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					udpFrame(tb, ap(h.c, 7001), ap(h.c, 7001), []byte("loop")),
					udpFrame(tb, ap(h.c, 7001), ap(h.c, 7001), []byte("loop")),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:   svcs{"none": {Packets: 2}},
					parse:      pcs{bpf.ParseNonCatalog: 2, bpf.ParseFlowNew: 1, bpf.ParseUnexpectedNew: 1},
					unexpected: uns{unEx("udp", h.c, 7001): {Answers: 1, Client: h.c}},
				}
			},
		},
		frameCase{
			name:   "udp to a port in no row without an answer is only a flow",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{udpFrame(tb, ap(h.c, 41003), ap(h.s, 9999), []byte("x"))}
			},
			want: func(h hosts) delta {
				return delta{
					services: svcs{"none": {Packets: 1}},
					parse:    pcs{bpf.ParseNonCatalog: 1, bpf.ParseFlowNew: 1},
				}
			},
		},
	)

	// TFTP: the answer comes from a new port of the server.
	tftp := func(tb testing.TB, h hosts) [][]byte {
		rrq := append([]byte{0, 1}, []byte("xcat/xnba.kpxe\x00octet\x00")...)
		data := append([]byte{0, 3, 0, 1}, bytes.Repeat([]byte{0x55}, 512)...)
		return [][]byte{
			udpFrame(tb, ap(h.c, 41100), ap(h.s, 69), rrq),
			udpFrame(tb, ap(h.s, 50000), ap(h.c, 41100), data),
			udpFrame(tb, ap(h.c, 41100), ap(h.s, 50000), []byte{0, 4, 0, 1}),
		}
	}
	add(
		frameCase{
			name:   "tftp rrq, data from the server's new port, ack back",
			family: v4And6,
			frames: tftp,
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"tftp-udp/udp": {Packets: 3, Requests: 1, Replies: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1, bpf.ParseEphemeralNew: 1},
					exchanges: exs{ipEx("tftp-udp/udp", h.c, h.s): {Attempts: 1, Answers: 1, Followups: 1}},
				}
			},
		},
		frameCase{
			name:   "icmp quoting tftp data is a blocked return",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := tftp(tb, h)
				return [][]byte{f[0], f[1], icmpUnreachFrame(tb, h.c, h.s, closedCode(h), ipPacket(f[1]))}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"tftp-udp/udp": {Packets: 2, Requests: 1, Replies: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1, bpf.ParseEphemeralNew: 1},
					exchanges: exs{ipEx("tftp-udp/udp", h.c, h.s): {Attempts: 1, Answers: 1, ReturnBlocked: 1}},
				}
			},
		},
	)

	// ICMP destination unreachable quoting a request, by code class.
	type unreach struct {
		code   uint8
		closed bool
		filt   bool
	}
	for _, u := range []struct {
		fam   family
		codes []unreach
	}{
		{v4Only, []unreach{{code: 3, closed: true}, {code: 9, filt: true}, {code: 10, filt: true}, {code: 13, filt: true}, {code: 1}, {code: 0}}},
		{v6Only, []unreach{{code: 4, closed: true}, {code: 1, filt: true}, {code: 3}, {code: 0}}},
	} {
		for _, c := range u.codes {
			add(frameCase{
				name:   fmt.Sprintf("unreachable code %d quoting a udp request", c.code),
				family: u.fam,
				frames: func(tb testing.TB, h hosts) [][]byte {
					req := udpFrame(tb, ap(h.c, 41200), ap(h.s, 161), []byte("get"))
					return [][]byte{req, icmpUnreachFrame(tb, h.r, h.c, c.code, ipPacket(req))}
				},
				want: func(h hosts) delta {
					svc := bpf.ServiceCounters{Packets: 1, Requests: 1}
					ex := bpf.ExchangeCounters{Attempts: 1}
					switch {
					case c.closed:
						svc.ICMPClosed, ex.ICMPClosed = 1, 1
					case c.filt:
						svc.ICMPFiltered, ex.ICMPFiltered = 1, 1
					default:
						svc.ICMPOther, ex.ICMPOther = 1, 1
					}
					return delta{
						services:  svcs{"snmp/udp": svc},
						parse:     pcs{bpf.ParseExchangeNew: 1},
						exchanges: exs{ipEx("snmp/udp", h.c, h.s): ex},
					}
				},
			})
		}
	}
	add(
		frameCase{
			name:   "admin-prohibited quoting a syn, with no syn seen",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				syn := tcpFrame(tb, ap(h.c, 41201), ap(h.s, 3002), flagSYN, 1, nil)
				return [][]byte{icmpUnreachFrame(tb, h.r, h.c, filteredCode(h), ipPacket(syn))}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"xcatiport/tcp": {ICMPFiltered: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("xcatiport/tcp", h.c, h.s): {ICMPFiltered: 1}},
				}
			},
		},
		frameCase{
			name:   "unreachable quoting an answer is a blocked return",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				req := udpFrame(tb, ap(h.c, 41202), ap(h.s, 161), []byte("get"))
				rep := udpFrame(tb, ap(h.s, 161), ap(h.c, 41202), []byte("response"))
				return [][]byte{req, rep, icmpUnreachFrame(tb, h.c, h.s, closedCode(h), ipPacket(rep))}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"snmp/udp": {Packets: 2, Requests: 1, Replies: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{ipEx("snmp/udp", h.c, h.s): {Attempts: 1, Answers: 1, ReturnBlocked: 1}},
				}
			},
		},
		frameCase{
			name:   "unreachable quoting traffic in no row is unmatched",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				req := udpFrame(tb, ap(h.c, 41203), ap(h.s, 9999), []byte("x"))
				return [][]byte{icmpUnreachFrame(tb, h.s, h.c, closedCode(h), ipPacket(req))}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseICMPUnmatched: 1}} },
		},
		frameCase{
			name:   "echo request is not an unreachable",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				if h.v6 {
					return [][]byte{icmp6Frame(tb, h.c, h.s, layers.ICMPv6TypeEchoRequest, 0, []byte("ping"))}
				}
				return [][]byte{icmp4Frame(tb, h.c, h.s, layers.ICMPv4TypeEchoRequest, 0, []byte("ping"))}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseICMPNotUnreachable: 1}} },
		},
		frameCase{
			name:   "unreachable quoting too little of the packet",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				req := udpFrame(tb, ap(h.c, 41204), ap(h.s, 161), []byte("get"))
				hdr := 20
				if h.v6 {
					hdr = 40
				}
				return [][]byte{icmpUnreachFrame(tb, h.s, h.c, closedCode(h), ipPacket(req)[:hdr+2])}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncICMPInner: 1}} },
		},
		frameCase{
			name:   "unreachable quoting only part of an ip header",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				req := udpFrame(tb, ap(h.c, 41205), ap(h.s, 161), []byte("get"))
				return [][]byte{icmpUnreachFrame(tb, h.s, h.c, closedCode(h), ipPacket(req)[:12])}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncICMPInner: 1}} },
		},
		frameCase{
			name:   "unreachable quoting a later fragment is unmatched",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				req := ipv4Frag(udpFrame(tb, ap(h.c, 41206), ap(h.s, 161), []byte("get")), false, 10)
				return [][]byte{icmpUnreachFrame(tb, h.s, h.c, 3, ipPacket(req))}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseICMPUnmatched: 1}} },
		},
	)

	// DHCP pairs by transaction id and client hardware address.
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	discover := func(tb testing.TB, h hosts, xid uint32) []byte {
		return dhcpFrame(tb, ap(netip.IPv4Unspecified(), 68), ap(bcast, 67), layers.DHCPOpRequest, xid, h.mac)
	}
	offer := func(tb testing.TB, h hosts, xid uint32) []byte {
		return dhcpFrame(tb, ap(h.s, 67), ap(bcast, 68), layers.DHCPOpReply, xid, h.mac)
	}
	add(
		frameCase{
			name:   "dhcp discover and an offer with its xid",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{discover(tb, h, 0x1234), offer(tb, h, 0x1234)}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"bootps/udp": {Packets: 2, Requests: 1, Replies: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{dhcpEx(h.mac): {Attempts: 1, Answers: 1}},
				}
			},
		},
		frameCase{
			name:   "dhcp offer with another xid answers nothing",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{discover(tb, h, 0x1234), offer(tb, h, 0x9999)}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"bootps/udp": {Packets: 2, Requests: 1, Replies: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{dhcpEx(h.mac): {Attempts: 1}},
				}
			},
		},
		frameCase{
			name:   "dhcp through a relay, 67 to 67",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{
					dhcpFrame(tb, ap(h.r, 67), ap(h.s, 67), layers.DHCPOpRequest, 0x4242, h.mac),
					dhcpFrame(tb, ap(h.s, 67), ap(h.r, 67), layers.DHCPOpReply, 0x4242, h.mac),
				}
			},
			want: func(h hosts) delta {
				return delta{
					services:  svcs{"bootps/udp": {Packets: 2, Requests: 1, Replies: 1}},
					parse:     pcs{bpf.ParseExchangeNew: 1},
					exchanges: exs{dhcpEx(h.mac): {Attempts: 1, Answers: 1}},
				}
			},
		},
		frameCase{
			name:   "dhcp message too short to pair",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{udpFrame(tb, ap(netip.IPv4Unspecified(), 68), ap(bcast, 67), []byte{1, 1, 6, 0, 1, 2, 3, 4})}
			},
			want: func(h hosts) delta {
				return delta{
					services: svcs{"bootps/udp": {Packets: 1, Requests: 1}},
					parse:    pcs{bpf.ParseTruncDHCP: 1},
				}
			},
		},
	)

	// rpcbind: copies go to userspace, where mountd's port is learned.
	add(frameCase{
		name:   "rpcbind getport and its reply are copied to userspace",
		family: v4And6,
		frames: func(tb testing.TB, h hosts) [][]byte {
			return [][]byte{
				udpFrame(tb, ap(h.c, 41300), ap(h.s, 111), rpcGetport),
				udpFrame(tb, ap(h.s, 111), ap(h.c, 41300), rpcGetportReply),
			}
		},
		want: func(h hosts) delta {
			return delta{
				services:  svcs{"sunrpc-udp/udp": {Packets: 2, Requests: 1, Replies: 1}},
				parse:     pcs{bpf.ParseExchangeNew: 1},
				exchanges: exs{ipEx("sunrpc-udp/udp", h.c, h.s): {Attempts: 1, Answers: 1}},
			}
		},
		learnFrames: []int{0, 1},
	})

	// VLAN tags.
	synTo := func(tb testing.TB, h hosts, port uint16) []byte {
		return tcpFrame(tb, ap(h.c, 41400), ap(h.s, port), flagSYN, 1, nil)
	}
	oneSYN := func(key string) func(h hosts) delta {
		return func(h hosts) delta {
			return delta{
				services:  svcs{key: {Packets: 1, Requests: 1, SYN: 1}},
				parse:     pcs{bpf.ParseExchangeNew: 1},
				exchanges: exs{ipEx(key, h.c, h.s): {Attempts: 1}},
			}
		}
	}
	withParse := func(f func(h hosts) delta, more pcs) func(h hosts) delta {
		return func(h hosts) delta {
			d := f(h)
			for k, v := range more {
				d.parse[k] += v
			}
			return d
		}
	}
	add(
		frameCase{
			name:   "802.1q tag",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte { return [][]byte{withVLANs(synTo(tb, h, 22), 10)} },
			want:   withParse(oneSYN("ssh-tcp/tcp"), pcs{bpf.ParseVLAN: 1}),
		},
		frameCase{
			name:   "qinq: 802.1ad and 802.1q tags",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte { return [][]byte{withVLANs(synTo(tb, h, 22), 100, 10)} },
			want:   withParse(oneSYN("ssh-tcp/tcp"), pcs{bpf.ParseQinQ: 1}),
		},
		frameCase{
			name:   "three tags are too deep",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte { return [][]byte{withVLANs(synTo(tb, h, 22), 100, 10, 5)} },
			want:   func(h hosts) delta { return delta{parse: pcs{bpf.ParseQinQ: 1, bpf.ParseVLANTooDeep: 1}} },
		},
		frameCase{
			name:   "vlan tag cut short",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte { return [][]byte{withVLANs(synTo(tb, h, 22), 10)[:16]} },
			want:   func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncVLAN: 1}} },
		},
	)

	// IPv4 options: every IHL from 6 to 15.
	for ihl := 6; ihl <= 15; ihl++ {
		add(frameCase{
			name:   fmt.Sprintf("ipv4 options ihl %d", ihl),
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte { return [][]byte{withIPv4Options(synTo(tb, h, 3001), ihl)} },
			want:   withParse(oneSYN("xcatdport/tcp"), pcs{bpf.ParseIPv4Options: 1}),
		})
	}
	for ihl := 0; ihl < 5; ihl++ {
		add(frameCase{
			name:   fmt.Sprintf("ipv4 ihl %d is bogus", ihl),
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{patch(synTo(tb, h, 3001), ethHeaderLen, byte(0x40|ihl))}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseBadIPv4Header: 1}} },
		})
	}
	add(
		frameCase{
			name:   "ipv4 ethertype with an ip version 6 header",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{patch(synTo(tb, h, 3001), ethHeaderLen, 0x65)}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseBadIPv4Header: 1}} },
		},
		frameCase{
			name:   "ipv4 options cut short",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{withIPv4Options(synTo(tb, h, 3001), 15)[:ethHeaderLen+40]}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseIPv4Options: 1, bpf.ParseTruncIPv4: 1}} },
		},
	)

	// Fragments: only a first fragment carries the ports.
	snmpReq := func(tb testing.TB, h hosts) []byte {
		return udpFrame(tb, ap(h.c, 41500), ap(h.s, 161), bytes.Repeat([]byte{0x30}, 64))
	}
	oneSNMP := func(h hosts) delta {
		return delta{
			services:  svcs{"snmp/udp": {Packets: 1, Requests: 1}},
			parse:     pcs{bpf.ParseExchangeNew: 1},
			exchanges: exs{ipEx("snmp/udp", h.c, h.s): {Attempts: 1}},
		}
	}
	add(
		frameCase{
			name:   "ipv4 first fragment",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte { return [][]byte{ipv4Frag(snmpReq(tb, h), true, 0)} },
			want:   withParse(oneSNMP, pcs{bpf.ParseFragFirst: 1}),
		},
		frameCase{
			name:   "ipv4 later fragments",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{ipv4Frag(snmpReq(tb, h), true, 3), ipv4Frag(snmpReq(tb, h), false, 6)}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseFragLater: 2}} },
		},
		frameCase{
			name:   "ipv4 don't-fragment is no fragment",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := snmpReq(tb, h)
				return [][]byte{patch(f, ethHeaderLen+6, 0x40, 0)}
			},
			want: oneSNMP,
		},
		frameCase{
			name:   "ipv6 first fragment",
			family: v6Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{withIPv6Ext(snmpReq(tb, h), ext6{kind: ext6Fragment, more: true})}
			},
			want: withParse(oneSNMP, pcs{bpf.ParseFragFirst: 1, bpf.ParseIPv6ExtHeaders: 1}),
		},
		frameCase{
			name:   "ipv6 later fragment",
			family: v6Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{withIPv6Ext(snmpReq(tb, h), ext6{kind: ext6Fragment, offset: 8})}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseFragLater: 1, bpf.ParseIPv6ExtHeaders: 1}} },
		},
		frameCase{
			name:   "ipv6 hop-by-hop, routing, destination options and fragment headers",
			family: v6Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{withIPv6Ext(synTo(tb, h, 3001),
					ext6{kind: ext6HopByHop}, ext6{kind: ext6Routing}, ext6{kind: ext6DestOpts}, ext6{kind: ext6Fragment})}
			},
			want: withParse(oneSYN("xcatdport/tcp"), pcs{bpf.ParseIPv6ExtHeaders: 1}),
		},
		frameCase{
			name:   "ipv6 extension chain at the walk's limit",
			family: v6Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{withIPv6Ext(synTo(tb, h, 3001), ext6{kind: ext6HopByHop},
					ext6{kind: ext6DestOpts}, ext6{kind: ext6Routing}, ext6{kind: ext6DestOpts},
					ext6{kind: ext6DestOpts}, ext6{kind: ext6DestOpts})}
			},
			want: withParse(oneSYN("xcatdport/tcp"), pcs{bpf.ParseIPv6ExtHeaders: 1}),
		},
		frameCase{
			name:   "ipv6 extension chain longer than the walk allows",
			family: v6Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				return [][]byte{withIPv6Ext(synTo(tb, h, 3001), ext6{kind: ext6HopByHop},
					ext6{kind: ext6DestOpts}, ext6{kind: ext6Routing}, ext6{kind: ext6DestOpts},
					ext6{kind: ext6DestOpts}, ext6{kind: ext6DestOpts}, ext6{kind: ext6DestOpts})}
			},
			want: func(h hosts) delta {
				return delta{parse: pcs{bpf.ParseIPv6ExtHeaders: 1, bpf.ParseIPv6ExtTooDeep: 1}}
			},
		},
		frameCase{
			name:   "ipv6 extension header cut short",
			family: v6Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := withIPv6Ext(synTo(tb, h, 3001), ext6{kind: ext6HopByHop}, ext6{kind: ext6DestOpts})
				return [][]byte{f[:ethHeaderLen+40+8+1]}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncIPv6Ext: 1}} },
		},
	)

	// Runts and headers cut at every layer. BPF_PROG_TEST_RUN refuses a
	// frame shorter than an Ethernet header (as no driver delivers one),
	// so 14 bytes is the shortest frame here.
	add(
		frameCase{
			name:      "ethernet header only, ipv4 type",
			tcRefused: true,
			family:    v4Only,
			frames:    func(tb testing.TB, h hosts) [][]byte { return [][]byte{synTo(tb, h, 22)[:ethHeaderLen]} },
			want:      func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncIPv4: 1}} },
		},
		frameCase{
			name:      "ethernet header only, ipv6 type",
			tcRefused: true,
			family:    v6Only,
			frames:    func(tb testing.TB, h hosts) [][]byte { return [][]byte{synTo(tb, h, 22)[:ethHeaderLen]} },
			want:      func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncIPv6: 1}} },
		},
		frameCase{
			name:      "ipv4 header cut short",
			tcRefused: true,
			family:    v4Only,
			frames:    func(tb testing.TB, h hosts) [][]byte { return [][]byte{synTo(tb, h, 22)[:ethHeaderLen+19]} },
			want:      func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncIPv4: 1}} },
		},
		frameCase{
			name:      "ipv6 header cut short",
			tcRefused: true,
			family:    v6Only,
			frames:    func(tb testing.TB, h hosts) [][]byte { return [][]byte{synTo(tb, h, 22)[:ethHeaderLen+39]} },
			want:      func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncIPv6: 1}} },
		},
		frameCase{
			name:   "tcp header cut short",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := synTo(tb, h, 22)
				return [][]byte{f[:l4Offset(f)+19]}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncTCP: 1}} },
		},
		frameCase{
			name:   "udp header cut short",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := udpFrame(tb, ap(h.c, 41600), ap(h.s, 161), nil)
				return [][]byte{f[:l4Offset(f)+7]}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncUDP: 1}} },
		},
		frameCase{
			name:   "icmp header cut short",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := icmpUnreachFrame(tb, h.s, h.c, closedCode(h), nil)
				return [][]byte{f[:l4Offset(f)+7]}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseTruncICMP: 1}} },
		},
		frameCase{
			name:   "tcp data offset below 5",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := synTo(tb, h, 22)
				return [][]byte{patch(f, l4Offset(f)+12, 0x40)} // data offset 4 words
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseBadTCPHeader: 1}} },
		},
		frameCase{
			name:   "udp length below 8",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := udpFrame(tb, ap(h.c, 41601), ap(h.s, 161), nil)
				return [][]byte{patch(f, l4Offset(f)+4, 0, 7)}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseBadUDPLength: 1}} },
		},
		frameCase{
			name:   "arp is not ip",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
					HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
					SourceHwAddress: macClient, SourceProtAddress: h.c.AsSlice(),
					DstHwAddress: make([]byte, 6), DstProtAddress: h.s.AsSlice()}
				eth := &layers.Ethernet{SrcMAC: macClient, DstMAC: macBcast, EthernetType: layers.EthernetTypeARP}
				return [][]byte{serialize(tb, eth, arp)}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseNonIP: 1}} },
		},
		frameCase{
			name:   "sctp is another transport",
			family: v4And6,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := udpFrame(tb, ap(h.c, 41602), ap(h.s, 161), []byte("x"))
				if h.v6 {
					return [][]byte{patch(f, ethHeaderLen+6, 132)}
				}
				return [][]byte{patch(f, ethHeaderLen+9, 132)}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseOtherL4: 1}} },
		},
		frameCase{
			name:   "icmpv6 inside ipv4 is another transport",
			family: v4Only,
			frames: func(tb testing.TB, h hosts) [][]byte {
				f := icmp4Frame(tb, h.c, h.s, layers.ICMPv4TypeEchoRequest, 0, []byte("ping"))
				return [][]byte{patch(f, ethHeaderLen+9, 58)}
			},
			want: func(h hosts) delta { return delta{parse: pcs{bpf.ParseOtherL4: 1}} },
		},
	)
	return cases
}

func closedCode(h hosts) uint8 {
	if h.v6 {
		return 4
	}
	return 3
}

func filteredCode(h hosts) uint8 {
	if h.v6 {
		return 1
	}
	return 13
}

// hook is one of the two programs, run through BPF_PROG_TEST_RUN.
type hook struct {
	name string
	pass uint32
	run  func(l *Loader, frame []byte) (uint32, error)
}

var hooks = []hook{
	{"xdp", xdpPass, (*Loader).RunXDP},
	{"tc", tcActUnspec, (*Loader).RunTC},
}

// TestProgramFrames runs crafted frames through both programs and checks
// each program's verdict (always pass) and what the frames add to the maps.
// Direction comes from packet contents, so both hooks must agree.
func TestProgramFrames(t *testing.T) {
	requirePrivileged(t)
	cat := testCatalog(t)
	cases := frameCases()
	for _, hk := range hooks {
		t.Run(hk.name, func(t *testing.T) {
			l := loadForTest(t, Config{Catalog: cat})
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			learned, err := l.LearnEvents(ctx)
			if err != nil {
				t.Fatal(err)
			}
			i := 0
			for _, c := range cases {
				fams := map[family][]bool{v4Only: {false}, v6Only: {true}, v4And6: {false, true}}[c.family]
				for _, v6 := range fams {
					i++
					h := hostsFor(i, v6)
					name := c.name + map[bool]string{false: " v4", true: " v6"}[v6]
					t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
						runCase(t, l, cat, hk, c, h, learned)
					})
				}
			}
		})
	}
}

func runCase(t *testing.T, l *Loader, cat *catalog.Catalog, hk hook, c frameCase, h hosts, learned <-chan []byte) {
	frames := c.frames(t, h)
	if c.tcRefused && hk.name == "tc" {
		for i, f := range frames {
			if _, err := hk.run(l, f); !errors.Is(err, unix.EINVAL) {
				t.Errorf("frame %d: the kernel ran a TC program on a frame with an incomplete network header "+
					"(err %v); move this case into the TC table", i, err)
			}
		}
		return
	}
	before := mustSnapshot(t, l)
	for i, f := range frames {
		ret, err := hk.run(l, f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if ret != hk.pass {
			t.Errorf("frame %d: the program returned %#x, want %#x (pass)", i, ret, hk.pass)
		}
	}
	after := mustSnapshot(t, l)
	want := c.want(h)
	if want.parse == nil {
		want.parse = pcs{}
	}
	want.parse[bpf.ParsePackets] += uint64(len(frames))
	for _, problem := range compareDelta(diff(cat, before, after), want) {
		t.Error(problem)
	}
	beforeExchanges := before.ExchangeMap()
	for k, v := range after.ExchangeMap() {
		if _, old := beforeExchanges[k]; old {
			continue
		}
		if v.FirstSeen.IsZero() || v.LastSeen.Before(v.FirstSeen) || time.Since(v.FirstSeen).Abs() > time.Minute {
			t.Errorf("exchange %s: first seen %v, last seen %v: not the wall clock of the last minute",
				exchangeName(cat, k), v.FirstSeen, v.LastSeen)
		}
	}

	// Learn events: the copied frames, in order, and nothing else.
	for _, idx := range c.learnFrames {
		select {
		case got := <-learned:
			if !bytes.Equal(got, frames[idx]) {
				t.Errorf("learn event: got %d bytes %x, want frame %d (%d bytes)", len(got), got, idx, len(frames[idx]))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no learn event for frame %d", idx)
		}
	}
	select {
	case got := <-learned:
		t.Errorf("an unexpected learn event of %d bytes", len(got))
	case <-time.After(10 * time.Millisecond):
	}
}
