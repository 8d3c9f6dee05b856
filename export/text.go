package export

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"portwatch/classify"
)

// validUTF8 replaces each invalid byte by U+FFFD, as encoding/json does, so
// that every format carries the same text for the same bad input.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// truncateUTF8 cuts s to at most max bytes without splitting a character.
func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// printASCII keeps s to PRINTUSASCII (33-126), replacing every other
// character by '_', and to at most max bytes: the rule of RFC 5424's
// HOSTNAME, APP-NAME, PROCID and MSGID. An empty result is the NILVALUE "-".
func printASCII(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if r >= 33 && r <= 126 {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// oneLineASCII keeps s to printable US-ASCII and spaces, on one line, at most
// max bytes: what a human-oriented MSG can carry through any receiver. Tabs
// and line breaks become spaces and any other character '?'.
func oneLineASCII(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		switch {
		case r >= 32 && r <= 126:
			b.WriteRune(r)
		case r == '\t' || r == '\r' || r == '\n':
			b.WriteByte(' ')
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}

// addressKind says what an event's client or server string is.
type addressKind int

const (
	addrNone addressKind = iota
	addrIP
	addrMAC
	addrOther
)

func kindOfAddress(s string) addressKind {
	if s == "" {
		return addrNone
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return addrIP
	}
	if hw, err := net.ParseMAC(s); err == nil && len(hw) == 6 {
		return addrMAC
	}
	return addrOther
}

// shortMessage is the event's sentence for people, or one built from its
// fields when the classifier gave none.
func shortMessage(ev *classify.Event) string {
	if ev.Message != "" {
		return ev.Message
	}
	var b strings.Builder
	b.WriteString(string(ev.Verdict))
	if ev.Service != "" {
		b.WriteString(" " + ev.Service)
	}
	if ev.Proto != "" && ev.Port != 0 {
		b.WriteString(" " + ev.Proto + "/" + strconv.FormatUint(uint64(ev.Port), 10))
	}
	if ev.Reason != "" {
		b.WriteString(" (" + string(ev.Reason) + ")")
	}
	if ev.Client != "" || ev.Server != "" {
		b.WriteString(" " + orDash(ev.Client) + " -> " + orDash(ev.Server))
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// clampYear returns t in UTC, or the zero time when its UTC year is not
// 1970-9999: RFC 3339 cannot write a year past 9999 (and its year in
// another zone may differ from its UTC one), CEF's epoch milliseconds turn
// negative before 1970, and a monitor's clock is never there. One absurd
// timestamp then cannot stop a line from being written.
func clampYear(t time.Time) time.Time {
	t = t.UTC()
	if y := t.Year(); y < 1970 || y > 9999 {
		return time.Time{}
	}
	return t
}
