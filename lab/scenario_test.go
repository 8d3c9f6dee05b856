package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"portwatch/catalog"
	"portwatch/classify"
	"portwatch/lab"
)

func TestParseScenario(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		src     string
		wantErr string
		check   func(t *testing.T, s *lab.Scenario)
	}{
		{name: "bad verdict", file: "x.nft", src: "# scenario: x\n# expect: port_blocked tftp-udp/udp\n", wantErr: `verdict "port_blocked"`},
		{name: "short expect", file: "x.nft", src: "# scenario: x\n# expect: required_port_blocked\n", wantErr: "want VERDICT SERVICE"},
		{
			name: "valid",
			file: "x.nft",
			src: `# scenario: x
# summary: first part,
# summary: second part.
# expect: required_port_blocked tftp-udp/udp reason=no-reply server=mn
# expect: unexpected_port_open tcp/8080
# probe: tftp=timeout http-alt=ok
# probe: status-tcp=unreachable
# burst: nodes=10 concurrency=5
# A note: prose is allowed.
include "open.nft"
# expect: this is after the header and never read
`,
			check: func(t *testing.T, s *lab.Scenario) {
				if s.Name != "x" || s.Summary != "first part, second part." {
					t.Errorf("name %q summary %q", s.Name, s.Summary)
				}
				want := []string{"required_port_blocked tftp-udp/udp reason=no-reply server=mn", "unexpected_port_open tcp/8080"}
				var got []string
				for _, e := range s.Expect {
					got = append(got, e.String())
				}
				if !slices.Equal(got, want) {
					t.Errorf("expect = %q, want %q", got, want)
				}
				if s.Expect[0].Verdict != classify.RequiredPortBlocked || s.Expect[0].Reason != classify.ReasonNoReply || s.Expect[0].Line != 4 {
					t.Errorf("first expectation %+v", s.Expect[0])
				}
				for probe, want := range map[string]lab.Outcome{"tftp": lab.OutcomeTimeout, "http-alt": lab.OutcomeOK,
					"status-tcp": lab.OutcomeUnreachable, "dhcp": lab.OutcomeOK} {
					if got := s.ExpectedOutcome(probe); got != want {
						t.Errorf("ExpectedOutcome(%s) = %s, want %s", probe, got, want)
					}
				}
				// A line that names no observer applies to every one.
				for _, o := range lab.Observers() {
					if got := s.ExpectAt(o); len(got) != 2 {
						t.Errorf("ExpectAt(%s) = %v, want both lines", o, got)
					}
				}
				if s.Burst == nil || *s.Burst != (lab.BurstSpec{Nodes: 10, Concurrency: 5}) {
					t.Errorf("burst %+v", s.Burst)
				}
			},
		},
		{name: "name mismatch", file: "y.nft", src: "# scenario: x\n", wantErr: "names must agree"},
		{name: "no name", file: "x.nft", src: "# summary: s\n", wantErr: `no "# scenario: x" line`},
		{name: "unknown row", file: "x.nft", src: "# scenario: x\n# expect: required_port_blocked tftp/udp\n", wantErr: `no catalog row "tftp/udp"`},
		{name: "row not required", file: "x.nft", src: "# scenario: x\n# expect: required_port_blocked xcatlport/tcp\n", wantErr: "not required"},
		{name: "unexpected port in catalog", file: "x.nft", src: "# scenario: x\n# expect: unexpected_port_open tcp/22\n", wantErr: "in the catalog"},
		{name: "unexpected port malformed", file: "x.nft", src: "# scenario: x\n# expect: unexpected_port_open 8080\n", wantErr: "proto/port"},
		{name: "bad reason", file: "x.nft", src: "# scenario: x\n# expect: required_port_blocked tftp-udp/udp reason=dropped\n", wantErr: `reason "dropped"`},
		{name: "bad server", file: "x.nft", src: "# scenario: x\n# expect: required_port_blocked tftp-udp/udp server=n001\n", wantErr: `server "n001"`},
		{name: "bad observer", file: "x.nft", src: "# scenario: x\n# expect: required_port_blocked tftp-udp/udp observer=bmc\n", wantErr: `observer "bmc": want mn or fw`},
		{name: "bad return_path", file: "x.nft", src: "# scenario: x\n# expect: required_port_blocked tftp-udp/udp return_path=yes-ish\n", wantErr: `return_path "yes-ish"`},
		{name: "return_path of an open port", file: "x.nft", src: "# scenario: x\n# expect: unexpected_port_open tcp/8080 return_path=true\n", wantErr: "on a required_port_blocked line"},
		{name: "unknown field", file: "x.nft", src: "# scenario: x\n# expect: required_port_blocked tftp-udp/udp where=mn\n", wantErr: `unknown field "where=mn"`},
		{
			name: "per observer",
			file: "x.nft",
			src: `# scenario: x
# expect: required_port_blocked tftp-udp/udp reason=no-reply observer=fw return_path=false
# expect: required_port_blocked tftp-udp/udp reason=no-reply observer=mn return_path=true
# expect: unexpected_port_open tcp/8080
`,
			check: func(t *testing.T, s *lab.Scenario) {
				want := map[string][]string{
					lab.ObserverFW: {"required_port_blocked tftp-udp/udp reason=no-reply observer=fw", "unexpected_port_open tcp/8080"},
					lab.ObserverMN: {"required_port_blocked tftp-udp/udp reason=no-reply observer=mn return_path=true", "unexpected_port_open tcp/8080"},
				}
				for _, o := range lab.Observers() {
					var got []string
					for _, e := range s.ExpectAt(o) {
						got = append(got, e.String())
					}
					if !slices.Equal(got, want[o]) {
						t.Errorf("ExpectAt(%s) = %q, want %q", o, got, want[o])
					}
				}
				if s.Expect[0].ReturnPath || !s.Expect[1].ReturnPath {
					t.Errorf("return paths %v %v, want false true", s.Expect[0].ReturnPath, s.Expect[1].ReturnPath)
				}
			},
		},
		{name: "unknown probe", file: "x.nft", src: "# scenario: x\n# probe: ftp=timeout\n", wantErr: `no probe "ftp"`},
		{name: "bad outcome", file: "x.nft", src: "# scenario: x\n# probe: tftp=lost\n", wantErr: `outcome "lost"`},
		{name: "probe twice", file: "x.nft", src: "# scenario: x\n# probe: tftp=timeout tftp=ok\n", wantErr: "listed twice"},
		{name: "burst without nodes", file: "x.nft", src: "# scenario: x\n# burst: concurrency=5\n", wantErr: "nodes=1..200"},
		{name: "burst too big", file: "x.nft", src: "# scenario: x\n# burst: nodes=201\n", wantErr: "nodes=1..200"},
		{name: "burst bad key", file: "x.nft", src: "# scenario: x\n# burst: nodes=3 speed=2\n", wantErr: `unknown key "speed"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := lab.ParseScenario(tt.file, []byte(tt.src))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), tt.file) {
					t.Errorf("error %q does not start with the file name", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

// Every built-in scenario parses, and says something testable: a blocked
// or unexpected port comes with a probe outcome that shows it.
func TestBuiltinScenarios(t *testing.T) {
	scenarios := lab.Scenarios()
	var names []string
	for _, s := range scenarios {
		names = append(names, s.Name)
	}
	want := []string{"burst", "drop-tftp", "open", "prohibit-status", "reject-xcatd", "tftp-no-helper", "unexpected-open"}
	if !slices.Equal(names, want) {
		t.Fatalf("scenarios %q, want %q", names, want)
	}
	probes := map[string]lab.ProbeSpec{}
	for _, p := range lab.Probes() {
		probes[p.Name] = p
	}
	for _, s := range scenarios {
		if s.Summary == "" {
			t.Errorf("%s: no summary", s.Name)
		}
		if s.Name != "open" && len(s.Expect) == 0 {
			t.Errorf("%s: no expect line", s.Name)
		}
		for _, e := range s.Expect {
			// The probe of the same service must show the block.
			shown := false
			for name, o := range s.Probes {
				p := probes[name]
				switch e.Verdict {
				case classify.RequiredPortBlocked:
					shown = shown || (p.Service == e.Service && o != lab.OutcomeOK)
				case classify.UnexpectedPortOpen:
					shown = shown || (fmt.Sprintf("%s/%d", p.Proto, p.Port) == e.Service && o == lab.OutcomeOK)
				}
			}
			if e.Verdict == classify.UnexpectedPortOpen && s.ExpectedOutcome("http-alt") == lab.OutcomeOK {
				shown = true
			}
			if !shown {
				t.Errorf("%s: %q has no probe outcome that shows it", s.Name, e)
			}
		}
	}
	if _, err := lab.ScenarioByName("../open"); err == nil {
		t.Error("ScenarioByName accepted a path")
	}
}

// TestOpenAllowsCatalog checks that open.nft's port sets are exactly the
// catalog's on-wire rows, by the role that serves them: the catalog is the
// source, the rule set follows it.
func TestOpenAllowsCatalog(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{}
	setFor := map[catalog.Role]string{catalog.RoleMN: "mn", catalog.RoleCN: "cn", catalog.RoleBMC: "bmc", catalog.RoleSwitch: "switch"}
	for _, e := range cat.Entries() {
		if !e.OnWire {
			continue
		}
		first, last := int(e.Port), int(e.PortLast)
		if e.Dynamic && !e.HasPort() {
			first, last = lab.MountdPort, lab.MountdPort // the lab pins mountd
		}
		for _, r := range e.Roles {
			set := setFor[r] + "_" + e.Proto.String()
			for p := first; p <= last; p++ {
				if !slices.Contains(want[set], p) {
					want[set] = append(want[set], p)
				}
			}
		}
	}
	src, err := os.ReadFile(filepath.Join("scenarios", "open.nft"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int{}
	re := regexp.MustCompile(`(?s)set (\w+) \{\s*type inet_service\s*elements = \{([^}]*)\}`)
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		for _, f := range strings.Split(m[2], ",") {
			p, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatalf("set %s: %q is not a port", m[1], f)
			}
			got[m[1]] = append(got[m[1]], p)
		}
	}
	var sets []string
	for s := range want {
		sets = append(sets, s)
	}
	for s := range got {
		if _, ok := want[s]; !ok {
			sets = append(sets, s)
		}
	}
	sort.Strings(sets)
	for _, s := range sets {
		w, g := want[s], got[s]
		sort.Ints(w)
		sort.Ints(g)
		if !slices.Equal(w, g) {
			t.Errorf("open.nft set %s = %v, the catalog says %v", s, g, w)
		}
	}
}

func TestProbeServicesAreCatalogRows(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range lab.Probes() {
		if p.Service == "" {
			proto, _ := catalog.ParseProto(p.Proto)
			if cat.Expected(proto, uint16(p.Port)) {
				t.Errorf("probe %s names no row, but %s/%d is in the catalog", p.Name, p.Proto, p.Port)
			}
			continue
		}
		e := cat.ByKey(p.Service)
		if e == nil {
			t.Errorf("probe %s: no catalog row %s", p.Name, p.Service)
			continue
		}
		if e.HasPort() && !e.Contains(uint16(p.Port)) {
			t.Errorf("probe %s: port %d is not %s's %s", p.Name, p.Port, p.Service, e.PortString())
		}
	}
}
