package export

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const eventsDoc = "../docs/events.md"

// exampleBlock is an example in docs/events.md: a marker naming the golden
// file, then a fenced block holding that file's first line.
var exampleBlock = regexp.MustCompile("(?s)<!-- example: ([a-z0-9.-]+) -->\n```([a-z]*)\n(.*?)```\n<!-- end example -->")

// TestDocExamples keeps the examples of docs/events.md equal to what the
// encoders write for the first fixture event; -update rewrites them.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile(eventsDoc)
	if err != nil {
		t.Fatal(err)
	}
	events := fixtureEvents()[:1]
	want := map[string]string{}
	for _, f := range goldenFormats {
		want[f.file] = string(encodeAll(t, f.spec, events))
	}
	seen := map[string]bool{}
	var problems []string
	updated := exampleBlock.ReplaceAllFunc(doc, func(block []byte) []byte {
		m := exampleBlock.FindSubmatch(block)
		name, lang, body := string(m[1]), string(m[2]), string(m[3])
		seen[name] = true
		line, ok := want[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("example %q names no golden format", name))
			return block
		}
		if body != line {
			problems = append(problems, fmt.Sprintf("example %s is\n%s\nwant\n%s", name, body, line))
		}
		return fmt.Appendf(nil, "<!-- example: %s -->\n```%s\n%s```\n<!-- end example -->", name, lang, line)
	})
	for _, f := range goldenFormats {
		if !seen[f.file] {
			problems = append(problems, fmt.Sprintf("docs/events.md has no example of %s", f.file))
		}
	}
	if *update {
		if !bytes.Equal(updated, doc) {
			if err := os.WriteFile(eventsDoc, updated, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if len(problems) > 0 {
		t.Errorf("%s is out of date (go test ./export -update rewrites its examples):\n%s",
			filepath.Clean(eventsDoc), strings.Join(problems, "\n"))
	}
}

// TestDocNamesEveryField: each SD-PARAM name and each verdict and reason
// appears in the schema document.
func TestDocNamesEveryField(t *testing.T) {
	doc, err := os.ReadFile(eventsDoc)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	names = append(names, sdParamNames...)
	names = append(names, "required_port_blocked", "unexpected_port_open", "cleared", "capture_one_sided",
		"no-reply", "reset", "icmp-port-unreachable", "icmp-admin-prohibited", DefaultSDID, "32473", "RFC 5612")
	for _, name := range names {
		if !bytes.Contains(doc, []byte(name)) {
			t.Errorf("docs/events.md does not mention %q", name)
		}
	}
}
