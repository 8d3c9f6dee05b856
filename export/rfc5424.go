package export

import (
	"strconv"
	"time"

	"portwatch/classify"
)

// Field limits of RFC 5424 section 6.
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
)

// Limits of our own, so that an absurdly long value cannot make a message
// that receivers truncate or refuse: an ordinary event stays well within
// the 2048 octets RFC 5426 (UDP) and RFC 5425 (TLS) ask every receiver to
// accept, and the worst case is a few kilobytes.
const (
	maxSDValue = 256 // bytes of one PARAM-VALUE, before escaping
	maxMsg     = 512 // bytes of MSG
)

// syslogHeader writes "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID ".
type syslogHeader struct {
	facility int
	// timeLayout is TIMESTAMP's: microseconds, or milliseconds before a
	// LEEF or CEF line, as QRadar's LEEF guide asks of a syslog header.
	timeLayout string
	// hostname, when set, is every message's HOSTNAME; otherwise the
	// event's observer host, and fallbackHost when that is empty too.
	hostname, fallbackHost string
	appName, procID        string
}

func newSyslogHeader(facility int, timeLayout string, opts Options) syslogHeader {
	return syslogHeader{
		facility:     facility,
		timeLayout:   timeLayout,
		hostname:     opts.Hostname,
		fallbackHost: opts.fallbackHost,
		appName:      printASCII(opts.AppName, maxAppName),
		procID:       printASCII(opts.ProcID, maxProcID),
	}
}

// rfc5424Time is TIMESTAMP: UTC, microseconds (TIME-SECFRAC allows six
// digits at most). rfc5424TimeMillis is the same to the millisecond.
const (
	rfc5424Time       = "2006-01-02T15:04:05.000000Z07:00"
	rfc5424TimeMillis = "2006-01-02T15:04:05.000Z07:00"
)

func (h *syslogHeader) append(dst []byte, ev *classify.Event) []byte {
	pri := h.facility*8 + SeverityOf(ev.Verdict).Syslog
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(pri), 10)
	dst = append(dst, ">1 "...)
	if t := clampYear(ev.Time); t.IsZero() {
		dst = append(dst, '-')
	} else {
		dst = t.AppendFormat(dst, h.timeLayout)
	}
	host := h.hostname
	if host == "" {
		host = ev.Observer.Host
	}
	if host == "" {
		host = h.fallbackHost
	}
	dst = append(dst, ' ')
	dst = append(dst, printASCII(host, maxHostname)...)
	dst = append(dst, ' ')
	dst = append(dst, h.appName...)
	dst = append(dst, ' ')
	dst = append(dst, h.procID...)
	dst = append(dst, ' ')
	dst = append(dst, printASCII(string(ev.Verdict), maxMsgID)...)
	return append(dst, ' ')
}

// rfc5424Encoder writes the event as one SD-ELEMENT and a short MSG.
type rfc5424Encoder struct {
	header syslogHeader
	sdID   string
}

// The SD-PARAM names, in the order they are written. They are the JSON
// names, with the observer's fields flattened; every one is a valid SD-NAME
// (tested).
var sdParamNames = []string{
	"verdict", "service", "service_id", "proto", "port", "reason", "required",
	"client", "server", "attempts", "answers", "resets", "icmp_closed",
	"icmp_filtered", "return_blocked", "return_path", "first_seen", "last_seen",
	"observer_host", "observer_interface", "observer_backend", "observer_mode",
}

func (e *rfc5424Encoder) encode(dst []byte, ev *classify.Event) []byte {
	dst = e.header.append(dst, ev)
	dst = append(dst, '[')
	dst = append(dst, e.sdID...)
	param := func(name, value string) {
		dst = append(dst, ' ')
		dst = append(dst, name...)
		dst = append(dst, '=', '"')
		dst = appendParamValue(dst, value)
		dst = append(dst, '"')
	}
	optional := func(name, value string) {
		if value != "" {
			param(name, value)
		}
	}
	count := func(name string, n uint64) { param(name, strconv.FormatUint(n, 10)) }
	param("verdict", string(ev.Verdict))
	optional("service", ev.Service)
	if ev.ServiceID != 0 {
		count("service_id", uint64(ev.ServiceID))
	}
	optional("proto", ev.Proto)
	if ev.Port != 0 {
		count("port", uint64(ev.Port))
	}
	optional("reason", string(ev.Reason))
	param("required", boolString(ev.Required))
	optional("client", ev.Client)
	optional("server", ev.Server)
	count("attempts", ev.Attempts)
	count("answers", ev.Answers)
	count("resets", ev.Resets)
	count("icmp_closed", ev.ICMPClosed)
	count("icmp_filtered", ev.ICMPFiltered)
	count("return_blocked", ev.ReturnBlocked)
	if ev.ReturnPath {
		param("return_path", "true")
	}
	optional("first_seen", sdTime(ev.FirstSeen))
	optional("last_seen", sdTime(ev.LastSeen))
	optional("observer_host", ev.Observer.Host)
	optional("observer_interface", ev.Observer.Interface)
	optional("observer_backend", ev.Observer.Backend)
	optional("observer_mode", ev.Observer.Mode)
	dst = append(dst, ']')
	if msg := oneLineASCII(shortMessage(ev), maxMsg); msg != "" {
		// MSG is kept to printable US-ASCII so that it needs no BOM (RFC
		// 5424 section 6.4); the exact values are in the structured data.
		dst = append(dst, ' ')
		dst = append(dst, msg...)
	}
	return dst
}

// sdTime is a time in structured data: RFC 3339 in UTC, or "" when unset.
func sdTime(t time.Time) string {
	if t = clampYear(t); t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// appendParamValue writes a PARAM-VALUE (RFC 5424 section 6.3.3): valid
// UTF-8, with '"', '\' and ']' escaped by a backslash. Everything else,
// control characters included, is legal and kept, so the value round-trips.
func appendParamValue(dst []byte, value string) []byte {
	value = truncateUTF8(validUTF8(value), maxSDValue)
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '"', '\\', ']':
			dst = append(dst, '\\', c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// syslogLineEncoder carries a CEF or LEEF line as the MSG of an RFC 5424
// message with no structured data. The line is UTF-8 without a BOM: CEF and
// LEEF receivers read the line from its first character, and a BOM would be
// taken as part of "CEF:0".
type syslogLineEncoder struct {
	header syslogHeader
	line   encoder
}

func (e *syslogLineEncoder) encode(dst []byte, ev *classify.Event) []byte {
	dst = e.header.append(dst, ev)
	dst = append(dst, '-', ' ')
	return e.line.encode(dst, ev)
}
