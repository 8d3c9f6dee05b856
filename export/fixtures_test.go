package export

import (
	"flag"
	"strings"
	"testing"
	"time"

	"portwatch/classify"
	goldenfile "portwatch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ and the examples in docs/events.md")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, name, got, *update)
}

// testOptions fix everything that would differ between machines and runs.
func testOptions() Options {
	return Options{AppName: "portwatch", ProcID: "4242", Version: "1.0.0"}.withDefaults()
}

var (
	t0       = time.Date(2026, 3, 2, 9, 15, 30, 123456789, time.UTC)
	observer = classify.Observer{Host: "mn01", Interface: "eth1", Backend: "xdp", Mode: "native"}
)

// fixtureEvents is one event of each kind the schema describes: blocked with
// each reason, a DHCP client known by its MAC, unexpected open, cleared and
// one-sided.
func fixtureEvents() []classify.Event {
	return []classify.Event{
		{
			Time: t0, Verdict: classify.RequiredPortBlocked,
			Service: "tftp-udp", ServiceID: 18, Proto: "udp", Port: 69,
			Reason: classify.ReasonNoReply, Required: true,
			Client: "10.1.0.21", Server: "10.1.0.1",
			Attempts: 6, FirstSeen: t0.Add(-12 * time.Second), LastSeen: t0.Add(-time.Second),
			Observer: observer,
			Message:  "tftp-udp (udp/69) from 10.1.0.21 to 10.1.0.1: 6 requests over 11s, no reply",
		},
		{
			Time: t0.Add(time.Second), Verdict: classify.RequiredPortBlocked,
			Service: "xcatdport", ServiceID: 1, Proto: "tcp", Port: 3001,
			Reason: classify.ReasonReset, Required: true,
			Client: "10.1.0.22", Server: "10.1.0.1",
			Attempts: 3, Resets: 3, FirstSeen: t0.Add(-2 * time.Second), LastSeen: t0,
			Observer: observer,
			Message:  "xcatdport (tcp/3001) from 10.1.0.22 to 10.1.0.1: connection refused (3 TCP resets), no answer",
		},
		{
			Time: t0.Add(2 * time.Second), Verdict: classify.RequiredPortBlocked,
			Service: "xcatiport", ServiceID: 4, Proto: "udp", Port: 3002,
			Reason: classify.ReasonICMPPortUnreachable, Required: true,
			Client: "10.1.0.23", Server: "10.1.0.1",
			Attempts: 4, ICMPClosed: 4, FirstSeen: t0.Add(-5 * time.Second), LastSeen: t0.Add(time.Second),
			Observer: observer,
			Message:  "xcatiport (udp/3002) from 10.1.0.23 to 10.1.0.1: nothing listens on the port (4 ICMP port unreachable errors), no answer",
		},
		{
			Time: t0.Add(3 * time.Second), Verdict: classify.RequiredPortBlocked,
			Service: "xcatiport", ServiceID: 3, Proto: "tcp", Port: 3002,
			Reason: classify.ReasonICMPAdminProhibited, Required: true,
			Client: "fd00:10::23", Server: "fd00:10::1",
			Attempts: 3, ICMPFiltered: 3, FirstSeen: t0.Add(-4 * time.Second), LastSeen: t0.Add(2 * time.Second),
			Observer: observer,
			Message:  "xcatiport (tcp/3002) from fd00:10::23 to fd00:10::1: refused by a firewall (3 ICMP administratively prohibited errors), no answer",
		},
		{
			Time: t0.Add(4 * time.Second), Verdict: classify.RequiredPortBlocked,
			Service: "bootps", ServiceID: 13, Proto: "udp", Port: 67,
			Reason: classify.ReasonNoReply, Required: true,
			Client:   "52:54:00:ab:cd:21",
			Attempts: 4, FirstSeen: t0.Add(-8 * time.Second), LastSeen: t0.Add(3 * time.Second),
			Observer: observer,
			Message:  "bootps (udp/67) from 52:54:00:ab:cd:21 to any DHCP server: 4 requests over 11s, no reply",
		},
		{
			Time: t0.Add(4500 * time.Millisecond), Verdict: classify.RequiredPortBlocked,
			Service: "tftp-udp", ServiceID: 18, Proto: "udp", Port: 69,
			Reason: classify.ReasonNoReply, Required: true, ReturnPath: true,
			Client: "10.1.0.24", Server: "10.1.0.1",
			Attempts: 4, Answers: 4, FirstSeen: t0.Add(-5 * time.Second), LastSeen: t0.Add(4 * time.Second),
			Observer: observer,
			Message:  "tftp-udp (udp/69) from 10.1.0.24 to 10.1.0.1: the server answered 4 requests over 9s, but the client never followed up: the answers never reach it (typical of a stateful firewall without a TFTP helper)",
		},
		{
			Time: t0.Add(5 * time.Second), Verdict: classify.UnexpectedPortOpen,
			Proto: "tcp", Port: 8080,
			Client: "10.1.0.21", Server: "10.1.0.1",
			Answers: 2, FirstSeen: t0.Add(4 * time.Second), LastSeen: t0.Add(5 * time.Second),
			Observer: observer,
			Message:  "tcp/8080 on 10.1.0.1 answered 10.1.0.21: the port is in no catalog row",
		},
		{
			Time: t0.Add(20 * time.Second), Verdict: classify.Cleared,
			Service: "tftp-udp", ServiceID: 18, Proto: "udp", Port: 69, Required: true,
			Reason: classify.ReasonNoReply, Client: "10.1.0.21", Server: "10.1.0.1",
			Attempts: 8, Answers: 2, FirstSeen: t0.Add(-12 * time.Second), LastSeen: t0.Add(19 * time.Second),
			Observer: observer,
			Message:  "tftp-udp (udp/69) from 10.1.0.21 to 10.1.0.1: answered again after it was blocked (no-reply)",
		},
		{
			Time: t0.Add(30 * time.Second), Verdict: classify.CaptureOneSided,
			Observer: classify.Observer{Host: "mn01", Backend: "pcap", Mode: "mn01-eth1.pcap"},
			Message:  "the capture shows one direction only: 40 of 40 exchanges on 3 services that made attempts were never answered, yet the clients act on answers it does not show; verdicts on silence are suspended while this lasts",
		},
	}
}

// hostileValues are what a catalog file, an interface name or a host name
// could hold: every character some format must escape or avoid.
var hostileValues = map[string]string{
	"specials":       `q"uote back\slash b]racket p|ipe e=quals c^aret`,
	"tab":            "a\tb",
	"crlf":           "line1\r\nline2\nline3\r",
	"non-ascii":      "Grüße aus 東京 🚀",
	"escape":         "\x1b[31mred\x1b[0m",
	"bidi":           "abc\u202edef",
	"invalid-utf8":   "bad\xffbyte\xfe",
	"trailing-slash": `ends with a backslash\`,
	"fake-pair":      `x cs1=forged dpt=1`,
	"spaces":         "  two  spaces  ",
	"long":           strings.Repeat("x", 5000),
	"long-multibyte": strings.Repeat("é", 3000),
}

// hostileEvent puts v wherever the schema carries free text.
func hostileEvent(v string) classify.Event {
	ev := fixtureEvents()[0]
	ev.Service = v
	ev.Client = v
	ev.Reason = classify.Reason(v)
	ev.Observer.Host = v
	ev.Observer.Interface = v
	ev.Observer.Mode = v
	ev.Message = v
	return ev
}
