package export

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		raw  string
		want Spec
		name string // canonical String()
	}{
		{"jsonl", Spec{Format: FormatJSONL, Transport: TransportStdout}, "jsonl:-"},
		{"jsonl:-", Spec{Format: FormatJSONL, Transport: TransportStdout}, "jsonl:-"},
		{"JSONL:/var/log/pw.jsonl", Spec{Format: FormatJSONL, Transport: TransportFile, Path: "/var/log/pw.jsonl"}, "jsonl:/var/log/pw.jsonl"},
		{"jsonl:events.jsonl", Spec{Format: FormatJSONL, Transport: TransportFile, Path: "events.jsonl"}, "jsonl:events.jsonl"},
		{"jsonl:/odd/pa:th?x=1", Spec{Format: FormatJSONL, Transport: TransportFile, Path: "/odd/pa:th?x=1"}, "jsonl:/odd/pa:th?x=1"},
		{"cef:/var/log/pw.cef", Spec{Format: FormatCEF, Transport: TransportFile, Path: "/var/log/pw.cef"}, "cef:/var/log/pw.cef"},
		{"leef", Spec{Format: FormatLEEF, Transport: TransportStdout}, "leef:-"},
		{"syslog://siem.example.net",
			Spec{Format: FormatRFC5424, Transport: TransportUDP, Address: "siem.example.net:514", Facility: 16, SDID: DefaultSDID},
			"syslog://siem.example.net:514"},
		{"syslog+udp://10.0.0.9:1514",
			Spec{Format: FormatRFC5424, Transport: TransportUDP, Address: "10.0.0.9:1514", Facility: 16, SDID: DefaultSDID},
			"syslog://10.0.0.9:1514"},
		{"syslog+tcp://[fd00::9]:514?queue=100&facility=auth",
			Spec{Format: FormatRFC5424, Transport: TransportTCP, Address: "[fd00::9]:514", Facility: 4, SDID: DefaultSDID, QueueSize: 100},
			"syslog+tcp://[fd00::9]:514"},
		{"syslog+tls://siem.example.net?ca=/etc/pki/ca.pem&servername=siem&facility=23&sdid=xcat@99999.1",
			Spec{Format: FormatRFC5424, Transport: TransportTLS, Address: "siem.example.net:6514", Facility: 23, SDID: "xcat@99999.1",
				TLS: TLSOptions{CAFile: "/etc/pki/ca.pem", ServerName: "siem"}},
			"syslog+tls://siem.example.net:6514"},
		{"syslog+tls://h:6514?insecure-skip-verify=true&cert=c.pem&key=k.pem",
			Spec{Format: FormatRFC5424, Transport: TransportTLS, Address: "h:6514", Facility: 16, SDID: DefaultSDID,
				TLS: TLSOptions{InsecureSkipVerify: true, CertFile: "c.pem", KeyFile: "k.pem"}},
			"syslog+tls://h:6514"},
		{"cef+syslog+tcp://arcsight:514",
			Spec{Format: FormatCEF, Transport: TransportTCP, Address: "arcsight:514", Facility: 16},
			"cef+syslog+tcp://arcsight:514"},
		{"LEEF+Syslog://qradar",
			Spec{Format: FormatLEEF, Transport: TransportUDP, Address: "qradar:514", Facility: 16},
			"leef+syslog://qradar:514"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := ParseSpec(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Raw = tc.raw
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if got.String() != tc.name {
				t.Errorf("String() = %q, want %q", got.String(), tc.name)
			}
			// The canonical name parses back to the same destination.
			again, err := ParseSpec(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("canonical %q does not parse back: %v %q", got.String(), err, again.String())
			}
		})
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		raw  string
		want string // in the error, besides the spec itself
	}{
		{"", "empty output spec"},
		{"json:events.json", "JSON lines are called jsonl"},
		{"xml", `unknown format "xml"`},
		{"syslog", "syslog needs a URL"},
		{"jsonl:", "no file after"},
		{"jsonl://siem:514", "over the network use syslog+tcp"},
		{"cef://siem:514", "cef+syslog+tcp://"},
		{"syslog+tpc://h:514", `unknown transport "tpc"`},
		{"sislog://h", `unknown scheme "sislog"`},
		{"syslog+tcp+tls://h", "nothing may follow the transport"},
		{"json+syslog://h", `unknown scheme "json+syslog"`},
		{"syslog://", "no host"},
		{"syslog://:514", "no host"},
		{"syslog://h:", "empty port"},
		{"syslog://h:0", "not a number in 1-65535"},
		{"syslog://h:70000", "not a number in 1-65535"},
		{"syslog://h:http", "bad URL"},
		{"syslog://user:pw@h", "no user or password"},
		{"syslog://h/path", "no path"},
		{"syslog://h#frag", "no #fragment"},
		{"syslog://h?colour=red", `unknown option "colour"`},
		{"syslog://h?queue=0", "queue=0"},
		{"syslog://h?queue=lots", "queue=lots"},
		{"syslog://h?queue=1&queue=2", "given 2 times"},
		{"syslog://h?queue=", "has no value"},
		{"syslog://h?facility=local9", "facility=local9"},
		{"syslog://h?facility=24", "facility=24"},
		{"syslog://h?sdid=portwatch", "NAME@ENTERPRISE-NUMBER"},
		{"syslog://h?sdid=port%20watch@1", "not allowed in an SD-ID"},
		{"syslog://h?sdid=a@b", "enterprise number"},
		{"syslog://h?sdid=" + strings.Repeat("a", 30) + "@123", "32 characters"},
		{"cef+syslog://h?sdid=a@1", "not to cef"},
		{"syslog+tcp://h?ca=/etc/ca.pem", "syslog+tls only"},
		{"syslog://h?insecure-skip-verify=true", "syslog+tls only"},
		{"syslog+tls://h?insecure-skip-verify=yes-please", "want true or false"},
		{"syslog+tls://h?cert=c.pem", "cert and key go together"},
		{"syslog+tls://h?ca=ca.pem&insecure-skip-verify=true", "contradict"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			_, err := ParseSpec(tc.raw)
			if err == nil {
				t.Fatalf("ParseSpec(%q) accepted it", tc.raw)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if !strings.Contains(msg, `output "`+tc.raw+`"`) {
				t.Errorf("error %q does not name the spec", msg)
			}
		})
	}
}

func TestSpecListFlag(t *testing.T) {
	var list SpecList
	for _, v := range []string{"jsonl", "syslog+tcp://h:1514"} {
		if err := list.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := list.Set("nonsense"); err == nil {
		t.Error("Set accepted a bad spec")
	}
	if got, want := list.String(), "jsonl:-,syslog+tcp://h:1514"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if list.Type() == "" {
		t.Error("Type() is empty")
	}
}
