package export

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Format is how an event is written.
type Format string

// The formats a sink can write.
const (
	// FormatJSONL: one JSON object per line, the classify.Event schema.
	FormatJSONL Format = "jsonl"
	// FormatRFC5424: an RFC 5424 syslog message carrying the event as
	// STRUCTURED-DATA and a short MSG.
	FormatRFC5424 Format = "rfc5424"
	// FormatCEF: an ArcSight Common Event Format line.
	FormatCEF Format = "cef"
	// FormatLEEF: an IBM QRadar LEEF 2.0 line.
	FormatLEEF Format = "leef"
)

// Transport is where a sink's messages go.
type Transport string

// The transports.
const (
	TransportStdout Transport = "stdout"
	TransportFile   Transport = "file" // appended to
	TransportUDP    Transport = "udp"  // syslog over UDP, RFC 5426: one message a datagram
	TransportTCP    Transport = "tcp"  // syslog over TCP, RFC 6587 octet counting
	TransportTLS    Transport = "tls"  // syslog over TLS, RFC 5425 (octet counting too)
)

// IsNetwork reports whether the transport sends syslog over the network.
func (t Transport) IsNetwork() bool {
	return t == TransportUDP || t == TransportTCP || t == TransportTLS
}

// Default ports when a syslog spec names none: RFC 5426 (UDP) and RFC 5425
// (TLS) assign 514 and 6514; RFC 6587 assigns nothing for TCP, and 514 is
// what rsyslog and syslog-ng listen on out of the box.
const (
	DefaultUDPPort = 514
	DefaultTCPPort = 514
	DefaultTLSPort = 6514
)

// DefaultSDID is the SD-ID of the structured-data element that carries an
// event. 32473 is the private enterprise number RFC 5612 reserves for
// documentation; a site with its own number sets sdid=NAME@NUMBER.
const DefaultSDID = "portwatch@32473"

// DefaultFacility is local0: the local facilities are the ones sites route
// by, and none of the named ones fits a network observer.
const DefaultFacility = 16

// TLSOptions configure a syslog+tls sink.
type TLSOptions struct {
	// CAFile is a PEM bundle of the CAs that may sign the server's
	// certificate; empty means the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate, for servers that
	// require mutual TLS. Both or neither.
	CertFile, KeyFile string
	// ServerName is the name checked in the server's certificate; empty
	// means the host of the address.
	ServerName string
	// InsecureSkipVerify accepts any server certificate. Only set when the
	// spec says insecure-skip-verify=true.
	InsecureSkipVerify bool
}

// Spec is one parsed --output value.
type Spec struct {
	// Raw is the text the user gave.
	Raw       string
	Format    Format
	Transport Transport
	// Path is the file of a file sink.
	Path string
	// Address is host:port of a network sink.
	Address string
	// QueueSize bounds the events waiting for delivery; 0 means
	// Options.QueueSize.
	QueueSize int
	// Facility is the syslog facility code (0-23) of a network sink.
	Facility int
	// SDID is the SD-ID of the element that carries the event (FormatRFC5424).
	SDID string
	TLS  TLSOptions
}

// String is the spec's canonical name: the format and destination without
// options. It names the sink in counters and errors.
func (s Spec) String() string {
	switch s.Transport {
	case TransportStdout:
		return string(s.Format) + ":-"
	case TransportFile:
		return string(s.Format) + ":" + s.Path
	}
	scheme := "syslog"
	if s.Format == FormatCEF || s.Format == FormatLEEF {
		scheme = string(s.Format) + "+syslog"
	}
	if s.Transport != TransportUDP {
		scheme += "+" + string(s.Transport)
	}
	return scheme + "://" + s.Address
}

// SpecSyntax is the grammar in one paragraph, for flag help and errors.
const SpecSyntax = `jsonl[:PATH|:-], cef[:PATH|:-], leef[:PATH|:-], or ` +
	`[cef+|leef+]syslog[+udp|+tcp|+tls]://HOST[:PORT][?OPTION=VALUE&...]`

var fileFormats = []Format{FormatJSONL, FormatCEF, FormatLEEF}

// ParseSpec reads one --output value. The grammar:
//
//	jsonl | jsonl:- | jsonl:PATH          JSON lines to stdout or appended to PATH
//	cef   | cef:-   | cef:PATH            CEF lines, likewise
//	leef  | leef:-  | leef:PATH           LEEF 2.0 lines, likewise
//	syslog[+udp|+tcp|+tls]://HOST[:PORT]  RFC 5424, the event as structured data
//	cef+syslog[+udp|+tcp|+tls]://...      RFC 5424 whose MSG is a CEF line
//	leef+syslog[+udp|+tcp|+tls]://...     RFC 5424 whose MSG is a LEEF line
//
// Options of a syslog spec, after "?" and joined by "&": queue=N,
// facility=NAME|0-23, sdid=NAME@NUMBER (structured data only), and for TLS
// ca=PATH, cert=PATH, key=PATH, servername=NAME, insecure-skip-verify=true.
func ParseSpec(raw string) (Spec, error) {
	spec, err := parseSpec(raw)
	var syntax grammarError
	if errors.As(err, &syntax) {
		return Spec{}, fmt.Errorf("output %q: %w (syntax: %s)", raw, err, SpecSyntax)
	}
	if err != nil {
		return Spec{}, fmt.Errorf("output %q: %w", raw, err)
	}
	spec.Raw = raw
	return spec, nil
}

// grammarError is an error in the spec's shape rather than in a value, the
// kind that the grammar in the message helps with.
type grammarError struct{ error }

func parseSpec(raw string) (Spec, error) {
	if strings.TrimSpace(raw) == "" {
		return Spec{}, grammarError{errors.New("empty output spec")}
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok && !strings.ContainsAny(scheme, ":/") {
		return parseNetworkSpec(strings.ToLower(scheme), rest)
	}
	name, path, hasPath := strings.Cut(raw, ":")
	format := Format(strings.ToLower(name))
	if !slices.Contains(fileFormats, format) {
		return Spec{}, unknownFormatError(name)
	}
	spec := Spec{Format: format, Transport: TransportStdout}
	switch {
	case !hasPath || path == "-":
	case path == "":
		return Spec{}, fmt.Errorf("no file after %q (give a path, or - for stdout)", name+":")
	default:
		spec.Transport, spec.Path = TransportFile, path
	}
	return spec, nil
}

func unknownFormatError(name string) error {
	hint := ""
	switch strings.ToLower(name) {
	case "json", "ndjson", "jsonlines":
		hint = "; JSON lines are called jsonl"
	case "syslog", "rfc5424", "udp", "tcp", "tls":
		hint = "; syslog needs a URL such as syslog+tcp://HOST:PORT"
	}
	return grammarError{fmt.Errorf("unknown format %q%s", name, hint)}
}

// parseNetworkSpec reads "[cef+|leef+]syslog[+udp|+tcp|+tls]" and the rest
// of the URL.
func parseNetworkSpec(scheme, rest string) (Spec, error) {
	spec := Spec{Format: FormatRFC5424, Transport: TransportUDP, Facility: DefaultFacility}
	parts := strings.Split(scheme, "+")
	i := 0
	if len(parts) > 1 && (parts[0] == string(FormatCEF) || parts[0] == string(FormatLEEF)) {
		spec.Format = Format(parts[0])
		i++
	}
	if i >= len(parts) || parts[i] != "syslog" {
		if slices.Contains(fileFormats, Format(parts[0])) && len(parts) == 1 {
			return Spec{}, fmt.Errorf("%s is written to a file or stdout (%s:PATH); over the network use %s",
				parts[0], parts[0], networkHint(Format(parts[0])))
		}
		return Spec{}, grammarError{fmt.Errorf("unknown scheme %q (want syslog, syslog+tcp, syslog+tls, or one of them prefixed by cef+ or leef+)", scheme)}
	}
	i++
	if i < len(parts) {
		switch Transport(parts[i]) {
		case TransportUDP, TransportTCP, TransportTLS:
			spec.Transport = Transport(parts[i])
		default:
			return Spec{}, fmt.Errorf("unknown transport %q in scheme %q (want udp, tcp or tls)", parts[i], scheme)
		}
		i++
	}
	if i != len(parts) {
		return Spec{}, grammarError{fmt.Errorf("unknown scheme %q: nothing may follow the transport", scheme)}
	}

	u, err := url.Parse(scheme + "://" + rest)
	if err != nil {
		return Spec{}, fmt.Errorf("bad URL: %v", errors.Unwrap(err))
	}
	if u.User != nil {
		return Spec{}, errors.New("a syslog URL takes no user or password")
	}
	if u.Path != "" && u.Path != "/" {
		return Spec{}, fmt.Errorf("a syslog URL takes no path (got %q)", u.Path)
	}
	if u.Fragment != "" {
		return Spec{}, errors.New("a syslog URL takes no #fragment")
	}
	host := u.Hostname()
	if host == "" {
		return Spec{}, errors.New("no host (write HOST:PORT after ://)")
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return Spec{}, errors.New("empty port after the host")
		}
		port = strconv.Itoa(defaultPort(spec.Transport))
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Spec{}, fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	spec.Address = net.JoinHostPort(host, port)
	if spec.Format == FormatRFC5424 {
		spec.SDID = DefaultSDID
	}
	if err := spec.applyOptions(u.Query()); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

func networkHint(f Format) string {
	if f == FormatJSONL {
		return "syslog+tcp://HOST:PORT (the event travels as RFC 5424 structured data)"
	}
	return string(f) + "+syslog+tcp://HOST:PORT"
}

func defaultPort(t Transport) int {
	switch t {
	case TransportTCP:
		return DefaultTCPPort
	case TransportTLS:
		return DefaultTLSPort
	}
	return DefaultUDPPort
}

func (spec *Spec) applyOptions(query url.Values) error {
	names := make([]string, 0, len(query))
	for name := range query {
		names = append(names, name)
	}
	slices.Sort(names) // the first error reported does not depend on map order
	tlsOnly := func(name string) error {
		if spec.Transport != TransportTLS {
			return fmt.Errorf("option %s applies to syslog+tls only", name)
		}
		return nil
	}
	for _, name := range names {
		values := query[name]
		if len(values) != 1 {
			return fmt.Errorf("option %s is given %d times", name, len(values))
		}
		value := values[0]
		if value == "" {
			return fmt.Errorf("option %s has no value", name)
		}
		switch name {
		case "queue":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 || n > MaxQueueSize {
				return fmt.Errorf("queue=%s: want a number of events in 1-%d", value, MaxQueueSize)
			}
			spec.QueueSize = n
		case "facility":
			f, err := parseFacility(value)
			if err != nil {
				return err
			}
			spec.Facility = f
		case "sdid":
			if spec.Format != FormatRFC5424 {
				return fmt.Errorf("option sdid applies to syslog structured data, not to %s", spec.Format)
			}
			if err := validSDID(value); err != nil {
				return fmt.Errorf("sdid=%s: %w", value, err)
			}
			spec.SDID = value
		case "ca":
			if err := tlsOnly(name); err != nil {
				return err
			}
			spec.TLS.CAFile = value
		case "cert":
			if err := tlsOnly(name); err != nil {
				return err
			}
			spec.TLS.CertFile = value
		case "key":
			if err := tlsOnly(name); err != nil {
				return err
			}
			spec.TLS.KeyFile = value
		case "servername":
			if err := tlsOnly(name); err != nil {
				return err
			}
			spec.TLS.ServerName = value
		case "insecure-skip-verify":
			if err := tlsOnly(name); err != nil {
				return err
			}
			b, err := strconv.ParseBool(value)
			if err != nil {
				return fmt.Errorf("insecure-skip-verify=%s: want true or false", value)
			}
			spec.TLS.InsecureSkipVerify = b
		default:
			return fmt.Errorf("unknown option %q (known: queue, facility, sdid, ca, cert, key, servername, insecure-skip-verify)", name)
		}
	}
	if (spec.TLS.CertFile == "") != (spec.TLS.KeyFile == "") {
		return errors.New("options cert and key go together (a client certificate needs its key)")
	}
	if spec.TLS.InsecureSkipVerify && spec.TLS.CAFile != "" {
		return errors.New("ca and insecure-skip-verify=true contradict each other: drop one")
	}
	return nil
}

var facilityNames = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
	"solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
	"local5": 21, "local6": 22, "local7": 23,
}

func parseFacility(value string) (int, error) {
	if f, ok := facilityNames[strings.ToLower(value)]; ok {
		return f, nil
	}
	if n, err := strconv.Atoi(value); err == nil && n >= 0 && n <= 23 {
		return n, nil
	}
	return 0, fmt.Errorf("facility=%s: want a name such as daemon, auth or local0..local7, or a number in 0-23", value)
}

// validSDID checks an SD-ID a site chooses: an SD-NAME (RFC 5424 section
// 6.3.2) in the private form NAME@NUMBER, since the unqualified names are
// reserved for IANA.
func validSDID(id string) error {
	if len(id) > 32 {
		return errors.New("longer than the 32 characters RFC 5424 allows")
	}
	for i := 0; i < len(id); i++ {
		if !isSDNameByte(id[i]) && id[i] != '@' {
			return fmt.Errorf("character %q is not allowed in an SD-ID", id[i])
		}
	}
	name, number, ok := strings.Cut(id, "@")
	if !ok || name == "" || number == "" || strings.Contains(number, "@") {
		return errors.New("want NAME@ENTERPRISE-NUMBER, for example portwatch@32473")
	}
	for _, part := range strings.Split(number, ".") {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			return errors.New("the part after @ must be an enterprise number such as 32473")
		}
	}
	return nil
}

// isSDNameByte: PRINTUSASCII except '=', SP, ']' and '"' (RFC 5424 SD-NAME);
// '@' is excluded too because it separates a private SD-ID's name from its
// enterprise number.
func isSDNameByte(c byte) bool {
	return c >= 33 && c <= 126 && c != '=' && c != ']' && c != '"' && c != '@'
}
