package probe

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Target is one host to probe, as the user named it.
type Target struct {
	// Name is an IP address or a host name.
	Name string
	// Origin says where it was given: "argument 2", "bmcs.txt:14".
	Origin string
}

// ParseTarget checks that s is an IP address or a host name.
func ParseTarget(s, origin string) (Target, error) {
	s = strings.TrimSpace(s)
	name := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if _, err := netip.ParseAddr(name); err == nil {
		return Target{Name: name, Origin: origin}, nil
	}
	if err := checkHostName(s); err != nil {
		return Target{}, fmt.Errorf("%s: %q is not an IP address or a host name: %v", origin, s, err)
	}
	return Target{Name: s, Origin: origin}, nil
}

// checkHostName accepts RFC 1123 names, and underscores, which some
// clusters use in node names.
func checkHostName(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	// RFC 1123: the last label is never all digits, so "10.77.2.300" is
	// a mistyped address, not a name to look up.
	if last := labels[len(labels)-1]; last != "" && strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("not a valid IP address, and a host name does not end in digits")
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("an empty label or one longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("a label starts or ends with '-'")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("character %q", c)
			}
		}
	}
	return nil
}

// ReadTargets reads a targets file: one address or host name a line, '#'
// to the end of a line is a comment, blank lines are skipped. A line that
// is not a target is an error in the list, and the rest is still read.
func ReadTargets(r io.Reader, name string) ([]Target, []error) {
	var targets []Target
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		origin := fmt.Sprintf("%s:%d", name, line)
		if strings.ContainsAny(text, " \t,;") {
			errs = append(errs, fmt.Errorf("%s: %q: one target a line (an address or a host name)", origin, text))
			continue
		}
		t, err := ParseTarget(text, origin)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		targets = append(targets, t)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return targets, errs
}
