package export

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"portwatch/classify"
)

func pairs(n int, server string) []classify.Pair {
	out := make([]classify.Pair, n)
	for i := range out {
		out[i] = classify.Pair{Client: "10.1.0." + strconv.Itoa(21+i), Server: server}
	}
	return out
}

// fixtureSummary has a row of every state, services out of order, and a
// hostile name, as a classifier could hand it over.
func fixtureSummary() classify.Summary {
	return classify.Summary{
		Profiles: []string{"linux", "ipmi"},
		Observer: observer,
		Start:    t0,
		End:      t0.Add(5*time.Minute + 400*time.Millisecond),
		Services: []classify.ServiceSummary{
			{Service: "xcatdport", ServiceID: 1, Proto: "tcp", Port: "3001", Required: true, Status: "required",
				State: classify.StateOK, Requests: 120, Replies: 120},
			{Service: "tftp-udp", ServiceID: 18, Proto: "udp", Port: "69", Required: true, Status: "required",
				State: classify.StateBlocked, Reason: classify.ReasonNoReply, ReturnPath: true, Requests: 300, Replies: 290,
				Affected: pairs(5, "10.1.0.1"), MoreAffected: 12},
			{Service: "xcatiport", ServiceID: 3, Proto: "tcp", Port: "3002", Required: true, Status: "required",
				State: classify.StateBlocked, Reason: classify.ReasonICMPAdminProhibited, Requests: 3,
				Affected: []classify.Pair{{Client: "fd00:10::23", Server: "fd00:10::1"}}},
			{Service: "bootps", ServiceID: 13, Proto: "udp", Port: "67", Required: true, Status: "required",
				State: classify.StateBlocked, Reason: classify.ReasonNoReply, Requests: 4,
				Affected: []classify.Pair{{Client: "52:54:00:ab:cd:21"}}},
			{Service: "xcatlport", ServiceID: 5, Proto: "tcp", Port: "3003", Status: "optional",
				State: classify.StateBlocked, Reason: classify.ReasonReset, Requests: 2,
				Affected: pairs(2, "10.1.0.1")},
			{Service: "snmp", ServiceID: 42, Proto: "udp", Port: "161", Status: "not-in-profile", State: classify.StateNotSeen},
			{Service: "mount-udp", ServiceID: 37, Proto: "udp", Port: "dynamic", Required: true, Status: "required",
				State: classify.StateOK, Requests: 10, Replies: 10},
			{Service: "ssh-udp", ServiceID: 8, Proto: "udp", Port: "22", Required: true, Status: "required",
				State: classify.StateNeverOnWire},
			{Service: "kerberos", ServiceID: 21, Proto: "tcp", Port: "88", Status: "obsolete", State: classify.StateNotSeen},
			{Service: "ssh-tcp", ServiceID: 7, Proto: "tcp", Port: "22", Required: true, Status: "required",
				State: classify.StateOK, Requests: 40, Replies: 40},
			{Service: "site\tsvc\x1b[31m" + strings.Repeat("-long", 12), ServiceID: 130, Proto: "tcp", Port: "9000-9010",
				Status: "optional", State: classify.StateBlocked, Reason: classify.ReasonNoReply, Requests: 3,
				Affected: []classify.Pair{{Client: "evil\nclient", Server: "10.1.0.1"}}},
		},
		Unexpected: []classify.UnexpectedSummary{
			{Proto: "tcp", Port: 8080, Server: "10.1.0.9", Answers: 2, Clients: []string{"10.1.0.21"},
				First: t0.Add(time.Minute), Last: t0.Add(2 * time.Minute)},
			{Proto: "udp", Port: 5353, Server: "10.1.0.2", Answers: 40,
				Clients: []string{"10.1.0.21", "10.1.0.22", "10.1.0.23", "10.1.0.24", "10.1.0.25"},
				First:   t0, Last: t0.Add(4 * time.Minute)},
			{Proto: "tcp", Port: 8080, Server: "10.1.0.10", Answers: 14, Clients: []string{"10.1.0.21", "10.1.0.22"},
				First: t0.Add(time.Second), Last: t0.Add(3 * time.Minute)},
			{Proto: "tcp", Port: 8080, Server: "fd00:10::1", Answers: 1, First: t0, Last: t0},
		},
	}
}

func TestWriteSummaryGolden(t *testing.T) {
	tests := []struct {
		file    string
		summary classify.Summary
	}{
		{"summary.txt", fixtureSummary()},
		{"summary-one-sided.txt", classify.Summary{
			Observer: classify.Observer{Host: "mn01", Backend: "pcap", Mode: "file"},
			Start:    t0, End: t0.Add(time.Minute), OneSided: true,
		}},
		{"summary-empty.txt", classify.Summary{}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			var b strings.Builder
			if err := WriteSummary(&b, tc.summary); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, []byte(b.String()))
		})
	}
}

// TestWriteSummaryIsStable: the order of rows does not depend on the order
// the classifier lists them in.
func TestWriteSummaryIsStable(t *testing.T) {
	s := fixtureSummary()
	var first strings.Builder
	if err := WriteSummary(&first, s); err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(s.Services)-1; i < j; i, j = i+1, j-1 {
		s.Services[i], s.Services[j] = s.Services[j], s.Services[i]
	}
	for i, j := 0, len(s.Unexpected)-1; i < j; i, j = i+1, j-1 {
		s.Unexpected[i], s.Unexpected[j] = s.Unexpected[j], s.Unexpected[i]
	}
	var second strings.Builder
	if err := WriteSummary(&second, s); err != nil {
		t.Fatal(err)
	}
	if first.String() != second.String() {
		t.Errorf("reversed input gives another table:\n%s\n%s", first.String(), second.String())
	}
}

// TestWriteSummaryInUTC: times in other zones (the local clock's, beside a
// capture's UTC) are all printed in UTC, so that one report has one zone.
func TestWriteSummaryInUTC(t *testing.T) {
	zoned := func(s classify.Summary, loc *time.Location) classify.Summary {
		s.Start, s.End = s.Start.In(loc), s.End.In(loc)
		s.Unexpected = slices.Clone(s.Unexpected)
		for i := range s.Unexpected {
			s.Unexpected[i].First = s.Unexpected[i].First.In(loc)
			s.Unexpected[i].Last = s.Unexpected[i].Last.In(loc)
		}
		return s
	}
	var utc, other strings.Builder
	if err := WriteSummary(&utc, fixtureSummary()); err != nil {
		t.Fatal(err)
	}
	if err := WriteSummary(&other, zoned(fixtureSummary(), time.FixedZone("EST", -5*3600))); err != nil {
		t.Fatal(err)
	}
	if utc.String() != other.String() {
		t.Errorf("a summary in another zone prints otherwise:\n%s\n%s", utc.String(), other.String())
	}
}

func TestCell(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "-"},
		{"tftp-udp", "tftp-udp"},
		{"Grüße 東京", "Grüße 東京"},
		{"a\tb\nc", `a\tb\nc`},
		{"\x1b[31m", `\x1b[31m`},
		{"abc\u202edef", `abc\u202edef`},
		{"bad\xff", `bad\xff`},
		{`back\slash`, `back\\slash`},
		{strings.Repeat("y", 50), strings.Repeat("y", 40) + "..."},
	}
	for _, tc := range tests {
		if got := cell(tc.in); got != tc.want {
			t.Errorf("cell(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
