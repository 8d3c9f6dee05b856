package catalog

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// tableRow is one row of xCAT's Port Usage table, as the text gives it.
type tableRow struct {
	name, port, proto, rng, need string
}

// readXCATTable parses the table out of the xCAT documentation text (a copy
// of the seed kept in testdata). The text has one cell per line, each ending
// in " |"; a row is name, port, protocol, then either the Range and the
// requirement, or the requirement and an empty cell. The last row ends
// without a bar.
func readXCATTable(t *testing.T) []tableRow {
	t.Helper()
	f, err := os.Open("testdata/xcat-port-usage.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "---|") {
			start = i + 1
			break
		}
	}
	if start < 0 {
		t.Fatal("no table in the xCAT text")
	}
	cell := func(i int) (string, bool) {
		if i >= len(lines) {
			return "", false
		}
		l := lines[i]
		if strings.HasSuffix(l, "|") {
			return strings.TrimSpace(strings.TrimSuffix(l, "|")), true
		}
		return l, false
	}
	rangeRe := regexp.MustCompile(`^\d+-\d+$`)
	var rows []tableRow
	for i := start; i < len(lines); {
		name, ok := cell(i)
		if !ok {
			break // the descriptions after the table
		}
		port, _ := cell(i + 1)
		proto, _ := cell(i + 2)
		fourth, more := cell(i + 3)
		r := tableRow{name: name, port: port, proto: proto}
		i += 4
		if rangeRe.MatchString(fourth) {
			r.rng = fourth
			r.need, more = cell(i)
			i++
		} else {
			r.need = fourth
			if more {
				i++ // the empty cell of a row without a range
			}
		}
		rows = append(rows, r)
		if !more {
			break
		}
	}
	return rows
}

// TestCatalogHasEveryTableRow derives the expected rows from xCAT's own text
// and checks that the catalog holds each, with its port, protocol, range and
// requirement: no row silently dropped or changed.
func TestCatalogHasEveryTableRow(t *testing.T) {
	rows := readXCATTable(t)
	if len(rows) != 44 {
		t.Fatalf("parsed %d rows from the xCAT table, want 44", len(rows))
	}
	cat, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	xcatRows := 0
	for _, e := range cat.Entries() {
		if e.Source == SourceXCAT {
			xcatRows++
		}
	}
	if xcatRows != len(rows) {
		t.Errorf("catalog has %d rows from xCAT's table, the table has %d", xcatRows, len(rows))
	}
	for _, r := range rows {
		proto := r.proto
		if strings.HasPrefix(proto, "see Note") {
			proto = "udp" // Note 2: "by definition it is UDP based"
		}
		e := cat.ByKey(r.name + "/" + proto)
		if e == nil {
			t.Errorf("table row %s %s/%s: not in the catalog", r.name, r.port, r.proto)
			continue
		}
		switch {
		case r.port == "100005": // rpc-mount: the RPC program, not a port (Note 2)
			if !e.Dynamic || e.RPCProgram != 100005 {
				t.Errorf("%s: want a dynamic row for RPC program 100005, got port %s program %d", e.Key(), e.PortString(), e.RPCProgram)
			}
		case strings.HasPrefix(r.port, "see Note"):
			if !e.Dynamic || e.HasPort() {
				t.Errorf("%s: want a dynamic port (Note 1), got %s", e.Key(), e.PortString())
			}
		default:
			want := strings.TrimSuffix(r.port, "(default)")
			if got := e.PortString(); got != want {
				t.Errorf("%s: port %s, table says %s", e.Key(), got, r.port)
			}
		}
		if e.TableNeed != r.need {
			t.Errorf("%s: table_need %q, table says %q", e.Key(), e.TableNeed, r.need)
		}
		wantNeed := NeedRequired
		switch {
		case strings.HasPrefix(r.need, "optional"):
			wantNeed = NeedOptional
		case strings.HasPrefix(r.need, "not supported"):
			wantNeed = NeedObsolete
		}
		if e.Need != wantNeed {
			t.Errorf("%s: need %s, table says %q", e.Key(), e.Need, r.need)
		}
		if e.PrivilegedSource != (r.rng == "1-1023") {
			t.Errorf("%s: privileged source %v, table's range %q", e.Key(), e.PrivilegedSource, r.rng)
		}
		if e.Description == "" || len(e.Roles) == 0 {
			t.Errorf("%s: missing description or roles", e.Key())
		}
	}
}

// The rows that xCAT lists but nothing ever sends to are marked so, and
// carry their requirement to the row that really has the traffic.
func TestNeverOnWireRows(t *testing.T) {
	cat, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ssh-udp/udp": "ssh-tcp/tcp",
		"www-udp/udp": "www-tcp/tcp",
		"dhcp/tcp":    "bootps/udp",
		"dhcpc/tcp":   "bootpc/udp",
		"pxe/tcp":     "pxe/udp",
	}
	for _, e := range cat.Entries() {
		carried, listed := want[e.Key()]
		if e.OnWire == listed {
			t.Errorf("%s: on_wire %v", e.Key(), e.OnWire)
		}
		if listed && e.CarriedBy != carried {
			t.Errorf("%s: carried by %q, want %q", e.Key(), e.CarriedBy, carried)
		}
	}
}
