package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"portwatch/classify"
)

// goldenFormats are the encoders the golden files and docs/events.md show.
var goldenFormats = []struct {
	file string
	spec Spec
}{
	{"events.jsonl", Spec{Format: FormatJSONL, Transport: TransportFile}},
	{"events.rfc5424", Spec{Format: FormatRFC5424, Transport: TransportUDP, Facility: DefaultFacility, SDID: DefaultSDID}},
	{"events.cef", Spec{Format: FormatCEF, Transport: TransportFile}},
	{"events.leef", Spec{Format: FormatLEEF, Transport: TransportFile}},
	{"events.cef-syslog", Spec{Format: FormatCEF, Transport: TransportTCP, Facility: DefaultFacility}},
	{"events.leef-syslog", Spec{Format: FormatLEEF, Transport: TransportTCP, Facility: DefaultFacility}},
}

func encodeAll(t *testing.T, spec Spec, events []classify.Event) []byte {
	t.Helper()
	enc, err := newEncoder(spec, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for i := range events {
		out = enc.encode(out, &events[i])
		out = append(out, '\n')
	}
	return out
}

func TestGoldenFormats(t *testing.T) {
	for _, tc := range goldenFormats {
		t.Run(tc.file, func(t *testing.T) {
			golden(t, tc.file, encodeAll(t, tc.spec, fixtureEvents()))
		})
	}
}

// TestGoldenParsesBack checks the golden output with the parsers, so that a
// golden file cannot be updated to something a receiver would reject.
func TestGoldenParsesBack(t *testing.T) {
	events := fixtureEvents()
	for _, tc := range goldenFormats {
		t.Run(tc.file, func(t *testing.T) {
			lines := strings.Split(strings.TrimSuffix(string(encodeAll(t, tc.spec, events)), "\n"), "\n")
			if len(lines) != len(events) {
				t.Fatalf("%d lines for %d events", len(lines), len(events))
			}
			for i, line := range lines {
				ev := &events[i]
				switch {
				case tc.spec.Format == FormatJSONL:
					var got classify.Event
					if err := json.Unmarshal([]byte(line), &got); err != nil {
						t.Fatal(err)
					}
					if !eventsEqual(got, *ev) {
						t.Errorf("line %d decodes to %+v, want %+v", i, got, *ev)
					}
				case tc.spec.Format == FormatRFC5424:
					msg := parseRFC5424(t, line)
					if got, want := (*msg.StructuredData)[DefaultSDID], expectedSD(ev); !maps.Equal(got, want) {
						t.Errorf("line %d structured data\n got %v\nwant %v", i, got, want)
					}
				case tc.spec.Format == FormatCEF:
					if tc.spec.Transport.IsNetwork() {
						line = messageOf(t, parseRFC5424(t, line))
					}
					header, ext := mustParseCEF(t, line)
					checkCEF(t, ev, header, ext)
				case tc.spec.Format == FormatLEEF:
					if tc.spec.Transport.IsNetwork() {
						line = messageOf(t, parseRFC5424(t, line))
					}
					header, attrs := mustParseLEEF(t, line)
					checkLEEF(t, ev, header, attrs)
				}
			}
		})
	}
}

// eventsEqual compares events with times compared as instants, since JSON
// does not keep a time's monotonic reading or *Location.
func eventsEqual(a, b classify.Event) bool {
	if !a.Time.Equal(b.Time) || !a.FirstSeen.Equal(b.FirstSeen) || !a.LastSeen.Equal(b.LastSeen) {
		return false
	}
	a.Time, a.FirstSeen, a.LastSeen = b.Time, b.FirstSeen, b.LastSeen
	return a == b
}

// expectedSD is the structured data docs/events.md promises for an event.
func expectedSD(ev *classify.Event) map[string]string {
	sd := map[string]string{
		"verdict":        string(ev.Verdict),
		"required":       strconv.FormatBool(ev.Required),
		"attempts":       strconv.FormatUint(ev.Attempts, 10),
		"answers":        strconv.FormatUint(ev.Answers, 10),
		"resets":         strconv.FormatUint(ev.Resets, 10),
		"icmp_closed":    strconv.FormatUint(ev.ICMPClosed, 10),
		"icmp_filtered":  strconv.FormatUint(ev.ICMPFiltered, 10),
		"return_blocked": strconv.FormatUint(ev.ReturnBlocked, 10),
	}
	text := func(name, value string) {
		if value != "" {
			sd[name] = truncateUTF8(validUTF8(value), maxSDValue)
		}
	}
	text("service", ev.Service)
	if ev.ServiceID != 0 {
		sd["service_id"] = strconv.Itoa(int(ev.ServiceID))
	}
	text("proto", ev.Proto)
	if ev.Port != 0 {
		sd["port"] = strconv.Itoa(int(ev.Port))
	}
	text("reason", string(ev.Reason))
	text("client", ev.Client)
	text("server", ev.Server)
	text("first_seen", sdTime(ev.FirstSeen))
	text("last_seen", sdTime(ev.LastSeen))
	text("observer_host", ev.Observer.Host)
	text("observer_interface", ev.Observer.Interface)
	text("observer_backend", ev.Observer.Backend)
	text("observer_mode", ev.Observer.Mode)
	if ev.ReturnPath {
		sd["return_path"] = "true"
	}
	return sd
}

func parseRFC5424(t *testing.T, line string) *rfc5424.SyslogMessage {
	t.Helper()
	msg, err := rfc5424.NewParser().Parse([]byte(line))
	if err != nil {
		t.Fatalf("RFC 5424 parser rejects %q: %v", line, err)
	}
	return msg.(*rfc5424.SyslogMessage)
}

func messageOf(t *testing.T, msg *rfc5424.SyslogMessage) string {
	t.Helper()
	if msg.Message == nil {
		t.Fatal("message has no MSG")
	}
	return *msg.Message
}

func TestSDParamNamesAreValid(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range sdParamNames {
		if len(name) == 0 || len(name) > 32 {
			t.Errorf("SD-NAME %q: length %d, want 1-32", name, len(name))
		}
		for i := 0; i < len(name); i++ {
			if !isSDNameByte(name[i]) {
				t.Errorf("SD-NAME %q: byte %q not allowed", name, name[i])
			}
		}
		if seen[name] {
			t.Errorf("SD-NAME %q listed twice", name)
		}
		seen[name] = true
	}
	// Every name the encoder writes is in the documented list.
	for _, ev := range fixtureEvents() {
		for name := range expectedSD(&ev) {
			if !seen[name] {
				t.Errorf("the encoder writes %q, which sdParamNames lacks", name)
			}
		}
	}
	if err := validSDID(DefaultSDID); err != nil {
		t.Errorf("DefaultSDID: %v", err)
	}
}

func TestTextHelpers(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"valid stays", validUTF8("Grüße"), "Grüße"},
		{"each bad byte replaced", validUTF8("a\xff\xfeb"), "a\uFFFD\uFFFDb"},
		{"cut at boundary", truncateUTF8("aé", 2), "a"},
		{"cut exact", truncateUTF8("aé", 3), "aé"},
		{"cut ascii", truncateUTF8("abcdef", 3), "abc"},
		{"printASCII replaces", printASCII("a b\tcé", 10), "a_b_c_"},
		{"printASCII cuts", printASCII("abcdef", 4), "abcd"},
		{"printASCII nil", printASCII("", 4), "-"},
		{"oneLine", oneLineASCII("a\tb\r\nc\x1bé", 20), "a b  c??"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

// TestJSONMatchesEncodingJSON: our U+FFFD rule is encoding/json's, so every
// format shows the same text for the same bad bytes.
func TestJSONMatchesEncodingJSON(t *testing.T) {
	for name, v := range hostileValues {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back != validUTF8(v) {
			t.Errorf("%s: encoding/json gives %q, validUTF8 %q", name, back, validUTF8(v))
		}
	}
}

func TestHostileJSON(t *testing.T) {
	enc := newJSONEncoder()
	for name, v := range hostileValues {
		t.Run(name, func(t *testing.T) {
			ev := hostileEvent(v)
			line := enc.encode(nil, &ev)
			if bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("line holds a raw line break: %q", line)
			}
			var got classify.Event
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			want := validUTF8(v)
			for field, value := range map[string]string{
				"service": got.Service, "client": got.Client, "reason": string(got.Reason),
				"observer.host": got.Observer.Host, "observer.interface": got.Observer.Interface,
				"observer.mode": got.Observer.Mode, "message": got.Message,
			} {
				if value != want {
					t.Errorf("%s = %q, want %q", field, value, want)
				}
			}
		})
	}
}

func TestHostileRFC5424(t *testing.T) {
	spec := Spec{Format: FormatRFC5424, Transport: TransportTCP, Facility: DefaultFacility, SDID: DefaultSDID}
	enc, err := newEncoder(spec, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range hostileValues {
		t.Run(name, func(t *testing.T) {
			ev := hostileEvent(v)
			line := enc.encode(nil, &ev)
			msg := parseRFC5424(t, string(line))
			if got, want := (*msg.StructuredData)[DefaultSDID], expectedSD(&ev); !maps.Equal(got, want) {
				for k := range want {
					if got[k] != want[k] {
						t.Errorf("SD-PARAM %s = %q, want %q", k, got[k], want[k])
					}
				}
				t.Fatalf("structured data differs")
			}
			if msg.Hostname == nil || !isPrintASCII(*msg.Hostname) || len(*msg.Hostname) > maxHostname {
				t.Errorf("HOSTNAME %v is not 1-255 PRINTUSASCII", msg.Hostname)
			}
			if got, want := *msg.Hostname, printASCII(v, maxHostname); got != want {
				t.Errorf("HOSTNAME %q, want %q", got, want)
			}
			body := messageOf(t, msg)
			if body != oneLineASCII(v, maxMsg) {
				t.Errorf("MSG %q, want %q", body, oneLineASCII(v, maxMsg))
			}
			for _, r := range body {
				if r < 32 || r > 126 {
					t.Errorf("MSG holds %q, outside printable US-ASCII", r)
				}
			}
		})
	}
}

func isPrintASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return s != ""
}

// TestRFC5424HeaderLimits: header fields from options and from the verdict
// are cut to their RFC 5424 lengths and kept to PRINTUSASCII.
func TestRFC5424HeaderLimits(t *testing.T) {
	opts := testOptions()
	opts.AppName = "app name with spaces and ümlauts, and far longer than forty-eight characters"
	opts.ProcID = strings.Repeat("9", 200)
	opts.Hostname = strings.Repeat("h", 300)
	spec := Spec{Format: FormatRFC5424, Transport: TransportUDP, Facility: 23, SDID: "site@12345.1"}
	enc, err := newEncoder(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	ev := fixtureEvents()[0]
	ev.Verdict = classify.Verdict("a verdict\nthat nobody\tknows, longer than thirty-two")
	msg := parseRFC5424(t, string(enc.encode(nil, &ev)))
	checks := []struct {
		field string
		got   *string
		max   int
	}{
		{"HOSTNAME", msg.Hostname, maxHostname},
		{"APP-NAME", msg.Appname, maxAppName},
		{"PROCID", msg.ProcID, maxProcID},
		{"MSGID", msg.MsgID, maxMsgID},
	}
	for _, c := range checks {
		if c.got == nil || len(*c.got) != c.max || !isPrintASCII(*c.got) {
			t.Errorf("%s = %v, want %d PRINTUSASCII characters", c.field, c.got, c.max)
		}
	}
	if int(*msg.Priority) != 23*8+SeverityOf(ev.Verdict).Syslog {
		t.Errorf("PRI %d, want facility 23 and severity %d", *msg.Priority, SeverityOf(ev.Verdict).Syslog)
	}
	if _, ok := (*msg.StructuredData)["site@12345.1"]; !ok {
		t.Errorf("SD-ID site@12345.1 missing: %v", *msg.StructuredData)
	}
}

// parseCEF splits a CEF line by the format's own rules: seven unescaped
// pipes end the header; in the extension an unescaped '=' ends a key that
// starts after the last space, and the previous value ends at that space.
func parseCEF(line string) (header []string, ext map[string]string, err error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, nil, errors.New("raw line break in the line")
	}
	var field strings.Builder
	i := 0
	for ; i < len(line) && len(header) < 7; i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line) && (line[i+1] == '\\' || line[i+1] == '|'):
			field.WriteByte(line[i+1])
			i++
		case c == '\\':
			return nil, nil, fmt.Errorf("bare backslash in the header at %d", i)
		case c == '|':
			header = append(header, field.String())
			field.Reset()
		default:
			field.WriteByte(c)
		}
	}
	if len(header) != 7 || header[0] != "CEF:0" {
		return nil, nil, fmt.Errorf("header %q is not CEF:0 and seven fields", header)
	}
	rest := line[i:]
	// Positions of unescaped '='.
	var eqs []int
	for j := 0; j < len(rest); j++ {
		if rest[j] == '\\' {
			j++
			continue
		}
		if rest[j] == '=' {
			eqs = append(eqs, j)
		}
	}
	ext = map[string]string{}
	keyStart := 0
	for n, eq := range eqs {
		key := rest[keyStart:eq]
		if key == "" || strings.Trim(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
			return nil, nil, fmt.Errorf("bad key %q", key)
		}
		end := len(rest)
		if n+1 < len(eqs) {
			end = strings.LastIndexByte(rest[:eqs[n+1]], ' ')
			if end <= eq {
				return nil, nil, fmt.Errorf("no space before the key after %q", key)
			}
			keyStart = end + 1
		}
		value, err := unescapeCEF(rest[eq+1 : end])
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", key, err)
		}
		if _, dup := ext[key]; dup {
			return nil, nil, fmt.Errorf("key %q twice", key)
		}
		ext[key] = value
	}
	return header, ext, nil
}

func unescapeCEF(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", errors.New("value ends in a bare backslash")
		}
		i++
		switch s[i] {
		case '\\', '=':
			b.WriteByte(s[i])
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", fmt.Errorf("unknown escape \\%c", s[i])
		}
	}
	return b.String(), nil
}

func mustParseCEF(t *testing.T, line string) ([]string, map[string]string) {
	t.Helper()
	header, ext, err := parseCEF(line)
	if err != nil {
		t.Fatalf("CEF line %q: %v", line, err)
	}
	return header, ext
}

func checkCEF(t *testing.T, ev *classify.Event, header []string, ext map[string]string) {
	t.Helper()
	wantHeader := []string{"CEF:0", "portwatch", "portwatch", "1.0.0", string(ev.Verdict), verdictTitle(ev.Verdict), strconv.Itoa(SeverityOf(ev.Verdict).CEF)}
	if !slices.Equal(header, wantHeader) {
		t.Errorf("CEF header %q, want %q", header, wantHeader)
	}
	want := map[string]string{
		"rt":          strconv.FormatInt(ev.Time.UnixMilli(), 10),
		"cnt":         strconv.FormatUint(ev.Attempts, 10),
		"cs2Label":    "required",
		"cs2":         strconv.FormatBool(ev.Required),
		"cn1Label":    "answers",
		"cn1":         strconv.FormatUint(ev.Answers, 10),
		"cn2Label":    "resets",
		"cn2":         strconv.FormatUint(ev.Resets, 10),
		"cn3Label":    "icmpClosed",
		"cn3":         strconv.FormatUint(ev.ICMPClosed, 10),
		"flexNumber1": strconv.FormatUint(ev.ICMPFiltered, 10),
		"flexNumber2": strconv.FormatUint(ev.ReturnBlocked, 10),
	}
	if !ev.FirstSeen.IsZero() {
		want["start"] = strconv.FormatInt(ev.FirstSeen.UnixMilli(), 10)
	}
	if ev.Port != 0 {
		want["dpt"] = strconv.Itoa(int(ev.Port))
	}
	for k, v := range want {
		if ext[k] != v {
			t.Errorf("CEF %s = %q, want %q", k, ext[k], v)
		}
	}
	cut := func(s string, n int) string { return truncateUTF8(validUTF8(s), n) }
	switch kindOfAddress(ev.Client) {
	case addrIP:
		if ext["src"] != ev.Client {
			t.Errorf("CEF src = %q, want %q", ext["src"], ev.Client)
		}
	case addrMAC:
		if ext["smac"] != ev.Client {
			t.Errorf("CEF smac = %q, want %q", ext["smac"], ev.Client)
		}
	case addrOther:
		if ext["shost"] != cut(ev.Client, 1023) {
			t.Errorf("CEF shost = %q, want %q", ext["shost"], cut(ev.Client, 1023))
		}
	}
	for key, want := range map[string]string{
		"cs1":                    cut(ev.Service, 1023),
		"reason":                 cut(string(ev.Reason), 1023),
		"deviceExternalId":       cut(ev.Observer.Host, 255),
		"deviceInboundInterface": cut(ev.Observer.Interface, 128),
		"cs4":                    cut(ev.Observer.Mode, 1023),
		"msg":                    cut(ev.Message, 1023),
	} {
		if ext[key] != want {
			t.Errorf("CEF %s = %q, want %q", key, ext[key], want)
		}
	}
}

func TestHostileCEF(t *testing.T) {
	enc := &cefEncoder{version: "1.0.0"}
	for name, v := range hostileValues {
		t.Run(name, func(t *testing.T) {
			ev := hostileEvent(v)
			header, ext := mustParseCEF(t, string(enc.encode(nil, &ev)))
			checkCEF(t, &ev, header, ext)
		})
	}
}

// TestHostileHeaders: a verdict or version with pipes, backslashes and line
// breaks cannot add header fields in CEF or LEEF.
func TestHostileHeaders(t *testing.T) {
	ev := fixtureEvents()[0]
	ev.Verdict = classify.Verdict("odd|verdict\\with\nbreak")
	const version = `1|2\3`
	header, _ := mustParseCEF(t, string((&cefEncoder{version: version}).encode(nil, &ev)))
	if header[3] != version || header[4] != "odd|verdict\\with break" {
		t.Errorf("CEF header %q", header)
	}
	lheader, _ := mustParseLEEF(t, string((&leefEncoder{version: version}).encode(nil, &ev)))
	if lheader[3] != version || lheader[4] != "odd|verdict\\with break" {
		t.Errorf("LEEF header %q", lheader)
	}
}

// parseLEEF splits a LEEF 2.0 line: six header fields ending in a pipe
// (pipes and backslashes escaped by a backslash), the fifth-from-zero
// declaring the delimiter, then key=value attributes split by it.
func parseLEEF(line string) (header []string, attrs map[string]string, err error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, nil, errors.New("raw line break in the line")
	}
	var field strings.Builder
	i := 0
	for ; i < len(line) && len(header) < 6; i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line) && (line[i+1] == '\\' || line[i+1] == '|'):
			field.WriteByte(line[i+1])
			i++
		case c == '|':
			header = append(header, field.String())
			field.Reset()
		default:
			field.WriteByte(c)
		}
	}
	if len(header) != 6 || header[0] != "LEEF:2.0" {
		return nil, nil, fmt.Errorf("header %q is not LEEF:2.0 and six fields", header)
	}
	decl := header[5]
	var delim byte
	switch {
	case len(decl) == 1:
		delim = decl[0]
	case strings.HasPrefix(decl, "x") || strings.HasPrefix(decl, "0x"):
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(decl, "0"), "x"), 16, 8)
		if err != nil {
			return nil, nil, fmt.Errorf("delimiter %q: %v", decl, err)
		}
		delim = byte(n)
	default:
		return nil, nil, fmt.Errorf("delimiter %q", decl)
	}
	attrs = map[string]string{}
	for _, pair := range strings.Split(line[i:], string(delim)) {
		key, value, ok := strings.Cut(pair, "=")
		if !ok || key == "" {
			return nil, nil, fmt.Errorf("attribute %q has no key=", pair)
		}
		if _, dup := attrs[key]; dup {
			return nil, nil, fmt.Errorf("key %q twice", key)
		}
		attrs[key] = value
	}
	return header, attrs, nil
}

func mustParseLEEF(t *testing.T, line string) ([]string, map[string]string) {
	t.Helper()
	header, attrs, err := parseLEEF(line)
	if err != nil {
		t.Fatalf("LEEF line %q: %v", line, err)
	}
	return header, attrs
}

// leefText is what a value becomes in LEEF: no delimiter, no line break.
func leefText(s string) string {
	return strings.NewReplacer("^", "_", "\r", " ", "\n", " ").Replace(truncateUTF8(validUTF8(s), maxLEEFValue))
}

func checkLEEF(t *testing.T, ev *classify.Event, header []string, attrs map[string]string) {
	t.Helper()
	wantHeader := []string{"LEEF:2.0", "portwatch", "portwatch", "1.0.0", string(ev.Verdict), "x5E"}
	if !slices.Equal(header, wantHeader) {
		t.Errorf("LEEF header %q, want %q", header, wantHeader)
	}
	want := map[string]string{
		"devTime":       ev.Time.UTC().Format(leefTimeLayout),
		"devTimeFormat": leefTimeFormat,
		"cat":           string(ev.Verdict),
		"sev":           strconv.Itoa(SeverityOf(ev.Verdict).LEEF),
		"attempts":      strconv.FormatUint(ev.Attempts, 10),
		"answers":       strconv.FormatUint(ev.Answers, 10),
		"required":      strconv.FormatBool(ev.Required),
	}
	if ev.Port != 0 {
		want["dstPort"] = strconv.Itoa(int(ev.Port))
	}
	switch kindOfAddress(ev.Client) {
	case addrIP:
		want["src"] = ev.Client
	case addrMAC:
		want["srcMAC"] = ev.Client
	case addrOther:
		want["client"] = leefText(ev.Client)
	}
	if ev.Server != "" {
		want["dst"] = ev.Server
	}
	text := map[string]string{
		"service": ev.Service, "reason": string(ev.Reason), "observerHost": ev.Observer.Host,
		"observerInterface": ev.Observer.Interface, "observerMode": ev.Observer.Mode, "msg": ev.Message,
	}
	for k, v := range text {
		if v != "" {
			want[k] = leefText(v)
		}
	}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("LEEF %s = %q, want %q", k, attrs[k], v)
		}
	}
}

func TestHostileLEEF(t *testing.T) {
	enc := &leefEncoder{version: "1.0.0"}
	for name, v := range hostileValues {
		t.Run(name, func(t *testing.T) {
			ev := hostileEvent(v)
			header, attrs := mustParseLEEF(t, string(enc.encode(nil, &ev)))
			checkLEEF(t, &ev, header, attrs)
			for k, v := range attrs {
				if !utf8.ValidString(v) {
					t.Errorf("LEEF %s is not valid UTF-8: %q", k, v)
				}
			}
		})
	}
}

// TestSeverityOrder: blocked > unexpected open > cleared and one-sided, in
// every scale (syslog counts down).
func TestSeverityOrder(t *testing.T) {
	order := []classify.Verdict{classify.RequiredPortBlocked, classify.UnexpectedPortOpen, classify.Cleared}
	for i := 1; i < len(order); i++ {
		hi, lo := SeverityOf(order[i-1]), SeverityOf(order[i])
		if !(hi.Syslog < lo.Syslog && hi.CEF > lo.CEF && hi.LEEF > lo.LEEF) {
			t.Errorf("%s (%+v) is not above %s (%+v)", order[i-1], hi, order[i], lo)
		}
	}
	if SeverityOf(classify.Cleared) != SeverityOf(classify.CaptureOneSided) {
		t.Errorf("cleared and capture_one_sided differ")
	}
	if s := SeverityOf("some_future_verdict"); s.Syslog != 6 || s.CEF < 0 || s.LEEF < 1 {
		t.Errorf("unknown verdict severity %+v", s)
	}
}

// TestTimeOutsideRFC3339: a time RFC 3339 cannot write (year 10000) must
// not stop the line; it is written as unknown.
func TestTimeOutsideRFC3339(t *testing.T) {
	ev := fixtureEvents()[0]
	ev.Time = ev.Time.AddDate(8000, 0, 0)
	ev.LastSeen = ev.Time
	for _, f := range goldenFormats {
		line := string(encodeAll(t, f.spec, []classify.Event{ev}))
		switch f.spec.Format {
		case FormatJSONL:
			var got classify.Event
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("%s: %v", f.file, err)
			}
			if !got.Time.IsZero() || !got.LastSeen.IsZero() || !got.FirstSeen.Equal(ev.FirstSeen) || got.Service != ev.Service {
				t.Errorf("%s: %s", f.file, line)
			}
		case FormatRFC5424:
			msg := parseRFC5424(t, strings.TrimSuffix(line, "\n"))
			if msg.Timestamp != nil || (*msg.StructuredData)[DefaultSDID]["last_seen"] != "" {
				t.Errorf("%s: %s", f.file, line)
			}
		default:
			if strings.Contains(line, "10026") || strings.Contains(line, "|rt=") || strings.Contains(line, "|devTime=") ||
				strings.Contains(line, " end=") || strings.Contains(line, "lastSeen=") {
				t.Errorf("%s writes the absurd time: %s", f.file, line)
			}
		}
	}
}

// TestTimesInAnyZone: every format writes an event's times in UTC whatever
// zone they come in, and a time whose UTC year RFC 3339 cannot write (or
// before the epoch, negative in CEF) is left out instead of breaking the
// line or turning the year into 10000.
func TestTimesInAnyZone(t *testing.T) {
	inZone := func(ev classify.Event, loc *time.Location) classify.Event {
		ev.Time, ev.FirstSeen, ev.LastSeen = ev.Time.In(loc), ev.FirstSeen.In(loc), ev.LastSeen.In(loc)
		return ev
	}
	absurd := func(ev classify.Event, at time.Time) classify.Event {
		ev.Time, ev.FirstSeen, ev.LastSeen = at, at, at
		return ev
	}
	base := fixtureEvents()[0]
	lateNight := time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("UTC-5", -5*3600)) // 10000 in UTC
	early := time.Date(1, 1, 1, 3, 0, 0, 0, time.FixedZone("UTC+5", 5*3600))            // year 0 in UTC
	for _, tc := range goldenFormats {
		t.Run(tc.file, func(t *testing.T) {
			utc := encodeAll(t, tc.spec, []classify.Event{base})
			zoned := encodeAll(t, tc.spec, []classify.Event{inZone(base, time.FixedZone("CEST", 2*3600))})
			if !bytes.Equal(utc, zoned) {
				t.Errorf("an event in +02:00 encodes otherwise than in UTC:\n%s%s", utc, zoned)
			}
			for _, at := range []time.Time{lateNight, early} {
				out := encodeAll(t, tc.spec, []classify.Event{absurd(base, at)})
				if len(bytes.TrimSpace(out)) == 0 || bytes.Contains(out, []byte("10000-")) || bytes.Contains(out, []byte("rt=-")) ||
					bytes.Contains(out, []byte("0000-12-31")) {
					t.Errorf("time %v: %s", at, out)
				}
			}
		})
	}
}
