package export

import (
	"strconv"
	"strings"
	"time"

	"portwatch/classify"
)

// LEEF 2.0 has no escape for its attribute delimiter, so the header declares
// one that an event's values almost never hold, and values are kept free of
// it: '^', declared in the hex form the LEEF 2.0 header allows.
const (
	leefDelimiter     = '^'
	leefDelimiterDecl = "x5E"
	// leefDelimiterStandIn replaces the delimiter inside a value.
	leefDelimiterStandIn = '_'
)

// LEEF devTime: devTimeFormat is a Java SimpleDateFormat pattern; the Go
// layout writes the same text.
const (
	leefTimeFormat = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
	leefTimeLayout = "2006-01-02T15:04:05.000Z07:00"
)

// maxLEEFValue bounds one attribute value, in bytes.
const maxLEEFValue = 1023

// leefEncoder writes an IBM QRadar LEEF 2.0 line:
//
//	LEEF:2.0|portwatch|portwatch|VERSION|VERDICT|x5E|key=value^key=value...
//
// Keys are LEEF's predefined ones where one fits (devTime, cat, sev, src,
// srcMAC, dst, dstPort, proto) and self-describing custom ones otherwise.
type leefEncoder struct {
	version string
}

func (e *leefEncoder) encode(dst []byte, ev *classify.Event) []byte {
	dst = append(dst, "LEEF:2.0|"...)
	for _, field := range []string{headerVendor, headerProduct, e.version, string(ev.Verdict)} {
		dst = appendCEFHeader(dst, field) // LEEF escapes '|' and '\' in the header as CEF does
		dst = append(dst, '|')
	}
	dst = append(dst, leefDelimiterDecl...)
	dst = append(dst, '|')

	first := true
	// attr writes key=value, and nothing for an empty value.
	attr := func(key, value string) {
		if value == "" {
			return
		}
		if !first {
			dst = append(dst, leefDelimiter)
		}
		first = false
		dst = append(dst, key...)
		dst = append(dst, '=')
		dst = appendLEEFValue(dst, value)
	}
	attrTime := func(key string, t time.Time) {
		if t = clampYear(t); !t.IsZero() {
			attr(key, t.UTC().Format(leefTimeLayout))
		}
	}
	count := func(n uint64) string { return strconv.FormatUint(n, 10) }

	if t := clampYear(ev.Time); !t.IsZero() {
		attrTime("devTime", t)
		attr("devTimeFormat", leefTimeFormat)
	}
	attr("cat", string(ev.Verdict))
	attr("sev", strconv.Itoa(SeverityOf(ev.Verdict).LEEF))
	switch kindOfAddress(ev.Client) {
	case addrIP:
		attr("src", ev.Client)
	case addrMAC:
		attr("srcMAC", ev.Client)
	case addrOther:
		attr("client", ev.Client)
	}
	switch kindOfAddress(ev.Server) {
	case addrIP:
		attr("dst", ev.Server)
	case addrMAC, addrOther:
		attr("server", ev.Server)
	}
	if ev.Port != 0 {
		attr("dstPort", count(uint64(ev.Port)))
	}
	attr("proto", strings.ToUpper(ev.Proto))
	attr("reason", string(ev.Reason))
	attr("service", ev.Service)
	if ev.ServiceID != 0 {
		attr("serviceId", count(uint64(ev.ServiceID)))
	}
	attr("required", boolString(ev.Required))
	attr("attempts", count(ev.Attempts))
	attr("answers", count(ev.Answers))
	attr("resets", count(ev.Resets))
	attr("icmpClosed", count(ev.ICMPClosed))
	attr("icmpFiltered", count(ev.ICMPFiltered))
	attr("returnBlocked", count(ev.ReturnBlocked))
	if ev.ReturnPath {
		attr("returnPath", "true")
	}
	attrTime("firstSeen", ev.FirstSeen)
	attrTime("lastSeen", ev.LastSeen)
	attr("observerHost", ev.Observer.Host)
	attr("observerInterface", ev.Observer.Interface)
	attr("observerBackend", ev.Observer.Backend)
	attr("observerMode", ev.Observer.Mode)
	attr("msg", ev.Message)
	return dst
}

// appendLEEFValue writes a value that cannot end the attribute or the line:
// the delimiter becomes '_', CR and LF a space. Tabs, '=', '|' and '\' are
// plain text after the header.
func appendLEEFValue(dst []byte, value string) []byte {
	value = truncateUTF8(validUTF8(value), maxLEEFValue)
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case leefDelimiter:
			dst = append(dst, leefDelimiterStandIn)
		case '\r', '\n':
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
