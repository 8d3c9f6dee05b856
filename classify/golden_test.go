package classify

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"portwatch/catalog"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenRun pins what people read: the events of a small provisioning
// run, one JSON object a line, and its summary.
func TestGoldenRun(t *testing.T) {
	cat := mustCatalog(t)
	c := newClassifier(t, Config{Catalog: cat, Observer: Observer{Host: "mn1", Interface: "eth1", Backend: "xdp", Mode: "native"}})
	run := []win{
		{at: 10, ex: []xc{
			{svc: "bootps/udp", client: mac1, first: 0.2, last: 8.2, attempts: 3},
			{svc: "bootps/udp", client: "aa:bb:cc:00:00:02", first: 0.3, last: 0.4, attempts: 2, answers: 2},
			{svc: "tftp-udp/udp", client: node2, server: mn, first: 1.1, last: 7.6, attempts: 4, answers: 4},
			{svc: "xcatiport/tcp", client: node2, server: mn, first: 2, last: 2, attempts: 1, resets: 1},
			{svc: "rsyslogd/udp", client: node2, server: mn, first: 2.5, last: 9, attempts: 12},
		}, unexpected: []uc{{proto: catalog.TCP, server: mn, port: 8443, client: node2, first: 3, last: 3, answers: 1}}},
		{at: 20, ex: []xc{
			{svc: "bootps/udp", client: mac1, first: 0.2, last: 12.5, attempts: 5, answers: 1},
			{svc: "bootps/udp", client: "aa:bb:cc:00:00:02", first: 0.3, last: 0.4, attempts: 2, answers: 2},
			{svc: "tftp-udp/udp", client: node2, server: mn, first: 1.1, last: 15.6, attempts: 8, answers: 8},
			{svc: "xcatiport/tcp", client: node2, server: mn, first: 2, last: 14, attempts: 2, resets: 2},
			{svc: "rsyslogd/udp", client: node2, server: mn, first: 2.5, last: 19, attempts: 30},
			{svc: "domain-udp/udp", client: node2, server: mn, first: 11, last: 18, attempts: 4},
		}},
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	for _, w := range run {
		for _, e := range c.Update(snapshot(t, cat, w)) {
			if err := enc.Encode(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	sum, err := json.MarshalIndent(c.Summary(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out.Write(sum)
	out.WriteByte('\n')

	golden := filepath.Join("testdata", "run.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("output differs from %s (run go test -update if the change is intended):\n%s", golden, out.String())
	}
}
