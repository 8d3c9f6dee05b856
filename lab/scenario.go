package lab

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"portwatch/catalog"
	"portwatch/classify"
)

// The firewall scenarios: nftables rule sets for fw, one file each. Every
// file but open.nft includes open.nft and adds rules to its "scenario"
// chain (or flushes a chain of it), so a scenario reads as "open, except".
//
//go:embed scenarios/*.nft
var scenarioFS embed.FS

// nftTable is the one table every scenario defines in fw.
const nftTable = "inet portwatch_lab"

// Scenario is a firewall rule set with the outcomes it must produce, read
// from the header of its file.
type Scenario struct {
	Name string
	// Summary says in one paragraph what the rule set does.
	Summary string
	// Expect lists every verdict the observers must report while the
	// scenario's traffic runs (ExpectAt: one observer's); a verdict not
	// listed is a false alarm.
	Expect []Expectation
	// Probes maps probe names to the outcome the scenario gives them; a
	// probe that is not listed must succeed (OutcomeOK).
	Probes map[string]Outcome
	// Burst, when set, says the scenario is run as a provisioning burst.
	Burst *BurstSpec
	// File is the file's name (scenarios/NAME.nft) and Source its text.
	File   string
	Source []byte
}

// Expectation is one "# expect:" line of a scenario header:
//
//	# expect: required_port_blocked tftp-udp/udp reason=no-reply server=mn observer=fw
//	# expect: required_port_blocked tftp-udp/udp reason=no-reply server=mn observer=mn return_path=true
//	# expect: unexpected_port_open tcp/8080 server=mn
type Expectation struct {
	Verdict classify.Verdict
	// Service is the catalog row ("name/proto") of a required_port_blocked
	// verdict, or "proto/port" of an unexpected_port_open one.
	Service string
	Reason  classify.Reason // empty: any reason
	// Server names the lab host that serves the port ("mn", "bmc", "sw");
	// empty: any.
	Server string
	// Observer names the observer that must report the verdict, ObserverMN
	// or ObserverFW; empty: every observer. Two observers of one exchange
	// differ when the firewall stops it between them: a request dropped
	// at fw never reaches mn, so mn sees nothing of it.
	Observer string
	// ReturnPath says the block is on the return path (the event's
	// return_path): the server answered and the answer never reached the
	// client. False: the event must not be a return-path block.
	ReturnPath bool
	Line       int
}

// The observers a scenario's expectations name: portwatch watching a lab
// interface that traffic between the nodes and mn crosses.
const (
	// ObserverMN watches the management node's interface (Lab.MNInterface).
	ObserverMN = "mn"
	// ObserverFW watches fw's interface towards the nodes
	// (Lab.FWNodeInterface): it sees what the nodes send before the
	// firewall judges it, and what comes back after.
	ObserverFW = "fw"
)

// Observers lists the observers expectations can name.
func Observers() []string { return []string{ObserverMN, ObserverFW} }

// ExpectAt returns the expectations that apply to one observer: those that
// name it and those that name none.
func (s *Scenario) ExpectAt(observer string) []Expectation {
	var out []Expectation
	for _, e := range s.Expect {
		if e.Observer == "" || e.Observer == observer {
			out = append(out, e)
		}
	}
	return out
}

func (e Expectation) String() string {
	s := string(e.Verdict) + " " + e.Service
	if e.Reason != "" {
		s += " reason=" + string(e.Reason)
	}
	if e.Server != "" {
		s += " server=" + e.Server
	}
	if e.Observer != "" {
		s += " observer=" + e.Observer
	}
	if e.ReturnPath {
		s += " return_path=true"
	}
	return s
}

// BurstSpec is the "# burst:" line: how many nodes provision at once.
type BurstSpec struct {
	Nodes       int
	Concurrency int
}

// ExpectedOutcome returns the outcome the scenario gives a probe.
func (s *Scenario) ExpectedOutcome(probe string) Outcome {
	if o, ok := s.Probes[probe]; ok {
		return o
	}
	return OutcomeOK
}

// Scenarios returns every built-in scenario, by name.
func Scenarios() []*Scenario {
	entries, err := fs.ReadDir(scenarioFS, "scenarios")
	if err != nil {
		panic(err) // the directory is embedded
	}
	var out []*Scenario
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".nft")
		if !ok {
			continue
		}
		s, err := ScenarioByName(name)
		if err != nil {
			panic(err) // scenario_test.go parses every file
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ScenarioNames lists the built-in scenarios.
func ScenarioNames() []string {
	var names []string
	for _, s := range Scenarios() {
		names = append(names, s.Name)
	}
	return names
}

// ScenarioByName returns a built-in scenario.
func ScenarioByName(name string) (*Scenario, error) {
	file := path.Join("scenarios", name+".nft")
	src, err := scenarioFS.ReadFile(file)
	if err != nil || strings.ContainsAny(name, "/.") {
		var names []string
		entries, _ := fs.ReadDir(scenarioFS, "scenarios")
		for _, e := range entries {
			names = append(names, strings.TrimSuffix(e.Name(), ".nft"))
		}
		return nil, fmt.Errorf("lab: no scenario %q (there are: %s)", name, strings.Join(names, ", "))
	}
	return ParseScenario("lab/"+file, src)
}

// ParseScenario reads a scenario's header: the comment lines at the top of
// the file of the form "# key: value", with key one of scenario, summary,
// expect, probe and burst. Other comment lines are prose.
func ParseScenario(file string, src []byte) (*Scenario, error) {
	name := strings.TrimSuffix(filepath.Base(file), ".nft")
	s := &Scenario{Name: name, File: file, Source: src, Probes: map[string]Outcome{}}
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		return nil, err
	}
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", file, line, fmt.Sprintf(format, args...))
	}
	sc := bufio.NewScanner(bytes.NewReader(src))
	var summary []string
	sawName := false
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#!") {
			continue
		}
		comment, ok := strings.CutPrefix(text, "#")
		if !ok {
			break // the header ends with the first rule
		}
		key, value, ok := strings.Cut(strings.TrimSpace(comment), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch key {
		case "scenario":
			if value != name {
				return nil, bad(n, "scenario %q in a file named %s.nft: the names must agree", value, name)
			}
			sawName = true
		case "summary":
			summary = append(summary, value)
		case "expect":
			e, err := parseExpectation(value, cat)
			if err != nil {
				return nil, bad(n, "expect: %v", err)
			}
			e.Line = n
			s.Expect = append(s.Expect, e)
		case "probe":
			for _, f := range strings.Fields(value) {
				probe, outcome, ok := strings.Cut(f, "=")
				if !ok {
					return nil, bad(n, "probe: %q: want NAME=OUTCOME", f)
				}
				if _, ok := probeByName(probe); !ok {
					return nil, bad(n, "probe: no probe %q (there are: %s)", probe, strings.Join(ProbeNames(), ", "))
				}
				o := Outcome(outcome)
				if !o.valid() {
					return nil, bad(n, "probe %s: outcome %q is none of %s", probe, outcome, outcomeNames())
				}
				if _, dup := s.Probes[probe]; dup {
					return nil, bad(n, "probe %s is listed twice", probe)
				}
				s.Probes[probe] = o
			}
		case "burst":
			b := &BurstSpec{}
			for _, f := range strings.Fields(value) {
				k, v, _ := strings.Cut(f, "=")
				i, err := strconv.Atoi(v)
				if err != nil || i < 1 {
					return nil, bad(n, "burst: %q: want a positive number", f)
				}
				switch k {
				case "nodes":
					b.Nodes = i
				case "concurrency":
					b.Concurrency = i
				default:
					return nil, bad(n, "burst: unknown key %q (nodes, concurrency)", k)
				}
			}
			if b.Nodes == 0 || b.Nodes > MaxNodes {
				return nil, bad(n, "burst: nodes=1..%d is required", MaxNodes)
			}
			if b.Concurrency == 0 {
				b.Concurrency = b.Nodes
			}
			s.Burst = b
		}
	}
	if !sawName {
		return nil, fmt.Errorf("%s: the header has no \"# scenario: %s\" line", file, name)
	}
	s.Summary = strings.Join(summary, " ")
	return s, nil
}

var verdictReasons = []classify.Reason{classify.ReasonNoReply, classify.ReasonReset,
	classify.ReasonICMPPortUnreachable, classify.ReasonICMPAdminProhibited}

func parseExpectation(value string, cat *catalog.Catalog) (Expectation, error) {
	f := strings.Fields(value)
	if len(f) < 2 {
		return Expectation{}, fmt.Errorf("%q: want VERDICT SERVICE [reason=R] [server=HOST] [observer=mn|fw] [return_path=true]", value)
	}
	e := Expectation{Verdict: classify.Verdict(f[0]), Service: f[1]}
	switch e.Verdict {
	case classify.RequiredPortBlocked:
		row := cat.ByKey(e.Service)
		if row == nil {
			return e, fmt.Errorf("no catalog row %q (name/proto, as in catalog/xcat-ports.yaml)", e.Service)
		}
		if !cat.IsRequired(row) {
			return e, fmt.Errorf("%s is not required in the default profiles: it can never be required_port_blocked", e.Service)
		}
	case classify.UnexpectedPortOpen:
		protoName, portText, ok := strings.Cut(e.Service, "/")
		proto, err := catalog.ParseProto(protoName)
		port, perr := strconv.ParseUint(portText, 10, 16)
		if !ok || err != nil || perr != nil {
			return e, fmt.Errorf("%q: an unexpected port is proto/port, e.g. tcp/8080", e.Service)
		}
		if cat.Expected(proto, uint16(port)) {
			return e, fmt.Errorf("%s is in the catalog, so it is never unexpected", e.Service)
		}
	default:
		return e, fmt.Errorf("verdict %q: want %s or %s", f[0], classify.RequiredPortBlocked, classify.UnexpectedPortOpen)
	}
	for _, kv := range f[2:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "reason":
			e.Reason = classify.Reason(v)
			known := false
			for _, r := range verdictReasons {
				known = known || r == e.Reason
			}
			if !known || e.Verdict != classify.RequiredPortBlocked {
				return e, fmt.Errorf("reason %q: want one of %v, on a %s line", v, verdictReasons, classify.RequiredPortBlocked)
			}
		case "server":
			switch Role(v) {
			case RoleMN, RoleBMC, RoleSwitch:
				e.Server = v
			default:
				return e, fmt.Errorf("server %q: want mn, bmc or sw", v)
			}
		case "observer":
			if !slices.Contains(Observers(), v) {
				return e, fmt.Errorf("observer %q: want %s", v, strings.Join(Observers(), " or "))
			}
			e.Observer = v
		case "return_path":
			b, err := strconv.ParseBool(v)
			if err != nil || e.Verdict != classify.RequiredPortBlocked {
				return e, fmt.Errorf("return_path %q: want true or false, on a %s line", v, classify.RequiredPortBlocked)
			}
			e.ReturnPath = b
		default:
			return e, fmt.Errorf("unknown field %q (reason=, server=, observer=, return_path=)", kv)
		}
	}
	return e, nil
}

// writeScenarioFiles copies the built-in scenarios where nft can include
// them from.
func writeScenarioFiles(dir string) error {
	entries, err := fs.ReadDir(scenarioFS, "scenarios")
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := scenarioFS.ReadFile(path.Join("scenarios", e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// LoadScenario replaces fw's rule set with a built-in scenario, atomically
// (one `nft -f` transaction), and forgets every tracked connection, so that
// flows the previous rules let through are judged again by the new ones.
func (l *Lab) LoadScenario(name string) error {
	if _, err := ScenarioByName(name); err != nil {
		return err
	}
	return l.loadRules(name, l.path("scenarios", name+".nft"))
}

// LoadScenarioFile loads a scenario file of one's own; it may include
// "open.nft" like the built-in ones.
func (l *Lab) LoadScenarioFile(file string) (*Scenario, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	s, err := ParseScenario(file, src)
	if err != nil {
		return nil, err
	}
	return s, l.loadRules(s.Name, file)
}

func (l *Lab) loadRules(name, file string) error {
	fw := l.topo.fw.Netns
	cmds := [][]string{
		{"nft", "-I", l.path("scenarios"), "-I", filepath.Dir(file), "-f", file},
		{"conntrack", "-F"},
		{"conntrack", "-F", "expect"},
	}
	for _, c := range cmds {
		out, err := exec.Command("ip", append([]string{"netns", "exec", fw}, c...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("scenario %s: %s in %s: %v: %s", name, strings.Join(c, " "), fw, err, strings.TrimSpace(string(out)))
		}
	}
	l.mu.Lock()
	l.scenario = name
	l.mu.Unlock()
	return l.saveState(true)
}

// Ruleset returns fw's rule set as nft lists it.
func (l *Lab) Ruleset() (string, error) {
	out, err := exec.Command("ip", "netns", "exec", l.topo.fw.Netns, "nft", "list", "table", nftTable).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft list table %s in %s: %v: %s", nftTable, l.topo.fw.Netns, err, out)
	}
	return string(out), nil
}
