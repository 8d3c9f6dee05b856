package export

import (
	"strconv"
	"strings"
	"time"

	"portwatch/classify"
)

// Vendor and product named in CEF and LEEF headers.
const (
	headerVendor  = "portwatch"
	headerProduct = "portwatch"
)

// cefEncoder writes an ArcSight CEF line:
//
//	CEF:0|portwatch|portwatch|VERSION|VERDICT|TITLE|SEVERITY|EXTENSION
//
// The extension keys are from ArcSight's CEF dictionary; what the dictionary
// has no key for goes into the labelled custom fields cs1-cs5, cn1-cn3 and
// flexNumber1-2.
type cefEncoder struct {
	version string
}

// Lengths the CEF dictionary gives for the keys we fill, where they are
// shorter than maxCEFValue.
var cefKeyMax = map[string]int{
	"act":                    63,
	"proto":                  31,
	"deviceExternalId":       255,
	"deviceInboundInterface": 128,
	"shost":                  1023,
	"dhost":                  1023,
}

// maxCEFValue bounds any other value, the 1023 characters of msg and reason.
const maxCEFValue = 1023

func (e *cefEncoder) encode(dst []byte, ev *classify.Event) []byte {
	dst = append(dst, "CEF:0|"...)
	for _, field := range []string{headerVendor, headerProduct, e.version, string(ev.Verdict), verdictTitle(ev.Verdict)} {
		dst = appendCEFHeader(dst, field)
		dst = append(dst, '|')
	}
	dst = strconv.AppendInt(dst, int64(SeverityOf(ev.Verdict).CEF), 10)
	dst = append(dst, '|')

	first := true
	// ext writes key=value, and nothing for an empty value.
	ext := func(key, value string) {
		if value == "" {
			return
		}
		if !first {
			dst = append(dst, ' ')
		}
		first = false
		dst = append(dst, key...)
		dst = append(dst, '=')
		limit, ok := cefKeyMax[key]
		if !ok {
			limit = maxCEFValue
		}
		dst = appendCEFExtension(dst, truncateUTF8(validUTF8(value), limit))
	}
	extTime := func(key string, t time.Time) {
		if t = clampYear(t); !t.IsZero() {
			ext(key, strconv.FormatInt(t.UnixMilli(), 10))
		}
	}
	count := func(n uint64) string { return strconv.FormatUint(n, 10) }

	extTime("rt", ev.Time)
	ext("act", verdictAction(ev.Verdict))
	ext("reason", string(ev.Reason))
	switch kindOfAddress(ev.Client) {
	case addrIP:
		ext("src", ev.Client)
	case addrMAC:
		ext("smac", ev.Client)
	case addrOther:
		ext("shost", ev.Client)
	}
	switch kindOfAddress(ev.Server) {
	case addrIP:
		ext("dst", ev.Server)
	case addrMAC, addrOther:
		ext("dhost", ev.Server)
	}
	if ev.Port != 0 {
		ext("dpt", count(uint64(ev.Port)))
	}
	ext("proto", strings.ToUpper(ev.Proto))
	ext("cnt", count(ev.Attempts))
	extTime("start", ev.FirstSeen)
	extTime("end", ev.LastSeen)
	ext("deviceExternalId", ev.Observer.Host)
	ext("deviceInboundInterface", ev.Observer.Interface)
	if ev.Service != "" {
		ext("cs1Label", "service")
		ext("cs1", ev.Service)
	}
	ext("cs2Label", "required")
	ext("cs2", boolString(ev.Required))
	if ev.Observer.Backend != "" {
		ext("cs3Label", "observerBackend")
		ext("cs3", ev.Observer.Backend)
	}
	if ev.Observer.Mode != "" {
		ext("cs4Label", "observerMode")
		ext("cs4", ev.Observer.Mode)
	}
	if ev.ServiceID != 0 {
		ext("cs5Label", "serviceId")
		ext("cs5", count(uint64(ev.ServiceID)))
	}
	if ev.ReturnPath {
		ext("cs6Label", "returnPath")
		ext("cs6", "true")
	}
	ext("cn1Label", "answers")
	ext("cn1", count(ev.Answers))
	ext("cn2Label", "resets")
	ext("cn2", count(ev.Resets))
	ext("cn3Label", "icmpClosed")
	ext("cn3", count(ev.ICMPClosed))
	ext("flexNumber1Label", "icmpFiltered")
	ext("flexNumber1", count(ev.ICMPFiltered))
	ext("flexNumber2Label", "returnBlocked")
	ext("flexNumber2", count(ev.ReturnBlocked))
	ext("msg", ev.Message)
	return dst
}

// appendCEFHeader escapes a header field: '\' and '|' by a backslash. A
// line break has no escape in the header and would end the line, so it
// becomes a space.
func appendCEFHeader(dst []byte, field string) []byte {
	field = validUTF8(field)
	for i := 0; i < len(field); i++ {
		switch c := field[i]; c {
		case '\\', '|':
			dst = append(dst, '\\', c)
		case '\r', '\n':
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendCEFExtension escapes an extension value: '\' and '=' by a
// backslash, CR and LF as \r and \n. A '|' needs no escape after the header.
func appendCEFExtension(dst []byte, value string) []byte {
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\\', '=':
			dst = append(dst, '\\', c)
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
