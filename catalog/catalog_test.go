package catalog

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func mustLoad(t *testing.T, o Options) *Catalog {
	t.Helper()
	c, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProfiles(t *testing.T) {
	tests := []struct {
		profiles    []string
		active      []string
		required    []string // rows that must be required
		notRequired []string // rows that must not be
	}{
		{
			profiles: nil, // the default: linux + ipmi
			active:   []string{"linux", "ipmi"},
			required: []string{"xcatdport/tcp", "xcatiport/tcp", "tftp-udp/udp", "www-tcp/tcp", "ssh-tcp/tcp",
				"rsyslogd/udp", "conserver/tcp", "ipmi/udp",
				"bootps/udp", "bootpc/udp", // Linux DHCP, carried from the dhcp/tcp and dhcpc/tcp rows
				"pxe/udp"}, // carried from pxe/tcp
			notRequired: []string{"xcatlport/tcp", "kerberos/udp", "nim/tcp", "kshell/tcp", "sunrpc-udp/udp",
				"mount-udp/udp", "snmp/udp", "snmptrap/udp", "rmc-tcp/tcp", "domain-udp/udp"},
		},
		{
			profiles:    []string{"aix"},
			active:      []string{"aix"},
			required:    []string{"bootps/udp", "bootpc/udp", "kshell/tcp", "nim/tcp", "sunrpc-udp/udp", "nfsd-tcp/tcp", "mount-udp/udp", "mount-tcp/tcp", "xcatdport/tcp"},
			notRequired: []string{"rsyslogd/udp", "ipmi/udp", "pxe/udp"},
		},
		{
			profiles: []string{"linux,ipmi,statelite"},
			active:   []string{"linux", "ipmi", "linux-statelite"},
			required: []string{"sunrpc-udp/udp", "nfsd-udp/udp", "mount-udp/udp", "rpc-mount/udp", "ipmi/udp"},
		},
		{
			profiles: []string{"x86_64", "flex", "snmp", "rmc"},
			active:   []string{"ipmi", "flex", "snmp-monitoring", "rmc-monitoring"},
			required: []string{"ipmi/tcp", "snmp/udp", "snmp/tcp", "snmptrap/udp", "rmc-udp/udp"},
			notRequired: []string{"bootps/udp", // not linux, aix nor p-linux
				"rsyslogd/udp"},
		},
		{
			profiles: []string{"p-linux"},
			active:   []string{"p-linux"},
			required: []string{"bootps/udp"},
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.profiles, "+"), func(t *testing.T) {
			c := mustLoad(t, Options{Profiles: tt.profiles})
			if !slices.Equal(c.ActiveProfiles(), tt.active) {
				t.Errorf("active profiles %v, want %v", c.ActiveProfiles(), tt.active)
			}
			for _, k := range tt.required {
				if e := c.ByKey(k); e == nil || !c.IsRequired(e) {
					t.Errorf("%s should be required", k)
				}
			}
			for _, k := range tt.notRequired {
				if e := c.ByKey(k); e == nil || c.IsRequired(e) {
					t.Errorf("%s should not be required", k)
				}
			}
		})
	}
}

func TestStatus(t *testing.T) {
	c := mustLoad(t, Options{})
	for key, want := range map[string]Status{
		"xcatdport/tcp": StatusRequired,
		"xcatlport/tcp": StatusOptional,
		"kerberos/tcp":  StatusObsolete,
		"nim/tcp":       StatusNotInProfile,
	} {
		if got := c.Status(c.ByKey(key)); got != want {
			t.Errorf("%s: status %s, want %s", key, got, want)
		}
	}
	if c.Expected(TCP, 88) {
		t.Error("an obsolete row (kerberos) must not make its port expected")
	}
	if !c.Expected(UDP, 22) {
		t.Error("a row that is never on the wire still makes its port expected")
	}
	if c.Expected(TCP, 8080) {
		t.Error("tcp/8080 is in no row")
	}
}

func TestLookup(t *testing.T) {
	c := mustLoad(t, Options{})
	tests := []struct {
		proto   Proto
		port    uint16
		srcPort uint16
		want    string
	}{
		{TCP, 3001, 40000, "xcatdport/tcp"},
		{UDP, 69, 40000, "tftp-udp/udp"},
		{TCP, 514, 1022, "shell/tcp"},     // rsh clients use a privileged port
		{TCP, 514, 40000, "rsyslogd/tcp"}, // syslog clients do not
		{TCP, 514, 0, "rsyslogd/tcp"},     // client port unknown
		{UDP, 4011, 40000, "pxe/udp"},
		{TCP, 1058, 900, "nim/tcp"}, // a privileged-only row
		{TCP, 1058, 40000, "nim/tcp"},
		{TCP, 8080, 40000, ""},
		{UDP, 0, 0, ""},
	}
	for _, tt := range tests {
		got := ""
		if e := c.Lookup(tt.proto, tt.port, tt.srcPort); e != nil {
			got = e.Key()
		}
		if got != tt.want {
			t.Errorf("Lookup(%s, %d, %d) = %q, want %q", tt.proto, tt.port, tt.srcPort, got, tt.want)
		}
	}
}

func TestServiceIDsAreStable(t *testing.T) {
	c := mustLoad(t, Options{})
	// Ids are map keys and metric identities: they must not move.
	for key, id := range map[string]ServiceID{
		"xcatdport/tcp": 1, "xcatiport/tcp": 3, "tftp-udp/udp": 18, "bootps/udp": 13,
		"snmptrap/udp": 44, "pxe/udp": 45,
	} {
		if e := c.ByKey(key); e == nil || e.ID != id {
			t.Errorf("%s: id changed, want %d", key, id)
		}
	}
	for _, e := range c.Entries() {
		if e.ID == 0 || e.ID > MaxServiceID {
			t.Errorf("%s: id %d out of range", e.Key(), e.ID)
		}
	}
}

func TestSiteOverrides(t *testing.T) {
	site := writeFile(t, "site.yaml", `# moved ports and extra services
ports:
  xcatdport: 3011
  httpport: 8080
  mount-udp: 33334
services:
  - name: ganglia
    proto: tcp
    port: 8649
    roles: [mn]
    need: optional
    description: Ganglia gmond.
  - name: lustre-mgs
    id: 300
    proto: tcp
    port: 988
    roles: [mn]
    need: required
    when: [statelite]
    description: Lustre management server.
  - name: gpfs-range
    proto: udp
    port: 60000-60010
    roles: [cn]
    need: optional
`)
	c := mustLoad(t, Options{SiteFile: site, Profiles: []string{"linux", "linux-statelite"}})
	checks := []struct {
		proto Proto
		port  uint16
		want  string
	}{
		{TCP, 3011, "xcatdport/tcp"},
		{UDP, 3011, "xcatdport/udp"},
		{TCP, 3001, ""},
		{TCP, 8080, "www-tcp/tcp"},
		{UDP, 8080, "www-udp/udp"},
		{TCP, 80, ""},
		{UDP, 33334, "mount-udp/udp"},
		{TCP, 8649, "ganglia/tcp"},
		{TCP, 988, "lustre-mgs/tcp"},
		{UDP, 60005, "gpfs-range/udp"},
		{UDP, 60011, ""},
	}
	for _, ck := range checks {
		got := ""
		if e := c.Lookup(ck.proto, ck.port, 40000); e != nil {
			got = e.Key()
		}
		if got != ck.want {
			t.Errorf("%s/%d: %q, want %q", ck.proto, ck.port, got, ck.want)
		}
	}
	if e := c.ByKey("ganglia/tcp"); e.ID != FirstSiteID || e.Source != site {
		t.Errorf("ganglia: id %d source %q", e.ID, e.Source)
	}
	if e := c.ByKey("lustre-mgs/tcp"); e.ID != 300 || !c.IsRequired(e) {
		t.Errorf("lustre-mgs: id %d required %v", e.ID, c.IsRequired(e))
	}
	if e := c.ByKey("gpfs-range/udp"); e.ID != FirstSiteID+1 || e.PortString() != "60000-60010" {
		t.Errorf("gpfs-range: id %d port %s", e.ID, e.PortString())
	}

	// Flags win over the file.
	c = mustLoad(t, Options{SiteFile: site, Ports: []string{"xcatdport=3021", "xcatiport=3022,xcatlport=3023"}})
	for key, port := range map[string]uint16{"xcatdport/tcp": 3021, "xcatiport/udp": 3022, "xcatlport/tcp": 3023, "www-tcp/tcp": 8080} {
		if e := c.ByKey(key); e.Port != port {
			t.Errorf("%s: port %d, want %d", key, e.Port, port)
		}
	}
}

func TestSiteTableImport(t *testing.T) {
	tab := writeFile(t, "site.csv", `#key,value,comments,disable
"blademaxp","64",,
"xcatdport","3101",,
"xcatiport","3102",,
"httpport","8081","moved for the proxy",
"xcatlport","3999",,"1"
"domain","cluster.example",,
`)
	c := mustLoad(t, Options{SiteTable: tab})
	for key, port := range map[string]uint16{"xcatdport/tcp": 3101, "xcatiport/tcp": 3102, "www-tcp/tcp": 8081, "xcatlport/tcp": 3003} {
		if e := c.ByKey(key); e.Port != port {
			t.Errorf("%s: port %d, want %d", key, e.Port, port)
		}
	}
}

func TestLearnedPorts(t *testing.T) {
	c := mustLoad(t, Options{Profiles: []string{"statelite"}})
	if c.Lookup(UDP, 20048, 40000) != nil {
		t.Fatal("mountd's port is not known before it is learned")
	}
	next, changed := c.WithRPCPort(100005, UDP, 20048)
	if !changed {
		t.Fatal("learning mountd's UDP port changed nothing")
	}
	if e := next.Lookup(UDP, 20048, 40000); e == nil || e.Key() != "mount-udp/udp" {
		t.Errorf("learned port serves %v", e)
	}
	if c.Lookup(UDP, 20048, 40000) != nil {
		t.Error("the old catalog must not change")
	}
	if _, changed := next.WithRPCPort(100005, UDP, 20048); changed {
		t.Error("learning the same port twice is a change")
	}
	if _, changed := next.WithRPCPort(100003, UDP, 2049); changed {
		t.Error("NFS itself has a fixed row: nothing to learn")
	}
	if _, changed := next.WithRPCPort(100005, TCP, 22); changed {
		t.Error("a learned port that a fixed row holds must be refused")
	}
}

// Bad input: every class of error names the file, the line and the field.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name    string
		site    string
		opts    Options
		wantErr string
	}{
		{"unknown protocol", "services:\n  - name: x\n    proto: sctp\n    port: 1\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:3: field "proto": unknown protocol "sctp" (want tcp or udp)`},
		{"port out of range", "services:\n  - name: x\n    proto: tcp\n    port: 70000\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:4: field "port": port 70000 out of range (1-65535)`},
		{"name too long", "services:\n  - name: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n    proto: tcp\n    port: 4000\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:2: field "name": name of 65 characters: at most 64`},
		{"port zero", "services:\n  - name: x\n    proto: tcp\n    port: 0\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:4: field "port": port 0 out of range (1-65535)`},
		{"port not a number", "ports:\n  xcatdport: three\n",
			Options{}, `site.yaml:2: field "xcatdport": port "three" is not a number`},
		{"range backwards", "services:\n  - name: x\n    proto: tcp\n    port: 9000-8000\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:4: field "port": port range "9000-8000" runs backwards`},
		{"range too wide", "services:\n  - name: x\n    proto: tcp\n    port: 1-65535\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:4: field "port": port range "1-65535" has 65535 ports; at most 4096`},
		{"duplicate row name", "services:\n  - name: xcatdport\n    proto: tcp\n    port: 4000\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:2: field "name": duplicate row: xcatdport/tcp is already defined (catalog/xcat-ports.yaml:`},
		{"duplicate row port", "services:\n  - name: mine\n    proto: udp\n    port: 69\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:2: field "port": duplicate row: udp/69 is already served by tftp-udp/udp (catalog/xcat-ports.yaml:`},
		{"override onto a taken port", "ports:\n  xcatdport: 69\n",
			Options{}, `site.yaml:2: field "xcatdport": duplicate row: this moves xcatdport/tcp to tcp/69, which tftp-tcp/tcp already serves (catalog/xcat-ports.yaml:`},
		{"--port onto a taken port", "",
			Options{Ports: []string{"xcatdport=69"}}, `--port: field "xcatdport": duplicate row: this moves xcatdport/tcp to tcp/69, which tftp-tcp/tcp already serves (catalog/xcat-ports.yaml:`},
		{"duplicate row id", "services:\n  - name: a\n    id: 200\n    proto: tcp\n    port: 4000\n    roles: [mn]\n    need: optional\n  - name: b\n    id: 200\n    proto: tcp\n    port: 4001\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:8: field "id": duplicate row: id 200 is already a/tcp (`},
		{"reserved id", "services:\n  - name: a\n    id: 12\n    proto: tcp\n    port: 4000\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:3: field "id": id 12 is reserved for the built-in table; site rows use 128-1023`},
		{"unknown profile in a row", "services:\n  - name: a\n    proto: tcp\n    port: 4000\n    roles: [mn]\n    need: required\n    when: [solaris]\n",
			Options{}, `site.yaml:2: field "when": unknown profile "solaris" (known: always, linux, aix, p-linux, linux-statelite, ipmi, flex, rmc-monitoring, snmp-monitoring)`},
		{"unknown profile flag", "", Options{Profiles: []string{"linux,solaris"}},
			`--profile: unknown profile "solaris" (known: linux, aix, p-linux, linux-statelite, ipmi, flex, rmc-monitoring, snmp-monitoring)`},
		{"override of an unknown key", "ports:\n  xcatport: 3011\n",
			Options{}, `site.yaml:2: field "xcatport": override of an unknown key "xcatport" (known: xcatdport, xcatiport, xcatlport, httpport, mount-tcp, mount-udp)`},
		{"flag override of an unknown key", "", Options{Ports: []string{"sshport=2222"}},
			`--port: field "sshport": override of an unknown key "sshport"`},
		{"flag without =", "", Options{Ports: []string{"xcatdport"}},
			`--port: "xcatdport": want KEY=PORT, as in xcatdport=3011`},
		{"unknown field", "services:\n  - name: a\n    proto: tcp\n    prot: 4000\n",
			Options{}, `site.yaml:4: field "prot": unknown field (known: carried_by, description, id, name, need, on_wire, pattern, port, portmapper, proto, range, roles, rpc_program, site_key, table_need, when)`},
		{"unknown top-level field", "port:\n  xcatdport: 3011\n",
			Options{}, `site.yaml:1: field "port": unknown field (known: ports, services)`},
		{"missing port", "services:\n  - name: a\n    proto: tcp\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:2: field "port": missing`},
		{"required without when", "services:\n  - name: a\n    proto: tcp\n    port: 4000\n    roles: [mn]\n    need: required\n",
			Options{}, `site.yaml:2: field "when": a required row needs when: [always] or the profiles that require it`},
		{"unknown role", "services:\n  - name: a\n    proto: tcp\n    port: 4000\n    roles: [router]\n    need: optional\n",
			Options{}, `site.yaml:5: field "roles": unknown role "router" (known: mn, cn, bmc, switch)`},
		{"bad range column", "services:\n  - name: a\n    proto: tcp\n    port: 4000\n    range: 1-2000\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:5: field "range": range "1-2000": the only source range the table knows is 1-1023`},
		{"dynamic without program", "services:\n  - name: a\n    proto: tcp\n    port: dynamic\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:4: field "port": a dynamic port needs rpc_program`},
		{"control character in a name", "services:\n  - name: \"a\\nb\"\n    proto: tcp\n    port: 4000\n    roles: [mn]\n    need: optional\n",
			Options{}, `site.yaml:2: field "name": name "a\nb" may not hold '/' or control characters`},
		{"not YAML", "ports: [unclosed\n", Options{}, `site.yaml:1: not valid YAML: did not find expected ',' or ']'`},
		{"not a mapping", "- a\n- b\n", Options{}, `site.yaml:1: want a mapping at the top level`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			if tt.site != "" {
				dir := t.TempDir()
				o.SiteFile = filepath.Join(dir, "site.yaml")
				if err := os.WriteFile(o.SiteFile, []byte(tt.site), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(o)
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			got := err.Error()
			if o.SiteFile != "" {
				got = strings.ReplaceAll(got, o.SiteFile, "site.yaml")
			}
			if !strings.HasPrefix(got, tt.wantErr) {
				t.Errorf("error:\n  %s\nwant it to start with:\n  %s", got, tt.wantErr)
			}
		})
	}
}

func TestBadSiteTable(t *testing.T) {
	tab := writeFile(t, "site.csv", "#key,value,comments,disable\n\"xcatdport\",\"30x1\",,\n")
	_, err := Load(Options{SiteTable: tab})
	want := tab + `:2: field "xcatdport": port "30x1" is not a number`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	_, err = Load(Options{SiteTable: filepath.Join(t.TempDir(), "missing.csv")})
	if err == nil || !strings.Contains(err.Error(), "reading site table") {
		t.Errorf("error %v", err)
	}
}

// The built-in table itself is checked by the same parser: a broken edit is
// reported with the file, line and field.
func TestBadBuiltin(t *testing.T) {
	broken := strings.Replace(string(builtinYAML), "    port: 3002\n", "    port: 3002x\n", 1)
	_, err := load([]byte(broken), BuiltinFile, Options{})
	if err == nil || !strings.HasPrefix(err.Error(), BuiltinFile+":") || !strings.Contains(err.Error(), `field "port": port "3002x" is not a number`) {
		t.Errorf("error %v", err)
	}
}

// TestSiteFileErrorsAll: a site file with several mistakes names each of
// them, in one run: a bad field in two rows, a bad port, an unknown key.
func TestSiteFileErrorsAll(t *testing.T) {
	site := writeFile(t, "site.yaml", `ports:
  xcatdport: 3011
  httport: 8080
  xcatiport: many
services:
  - name: ganglia
    proto: sctp
    port: 8649
    roles: [mn]
    need: optional
  - name: other
    proto: tcp
    port: 9000
    roles: [mn]
    need: maybe
`)
	_, err := Load(Options{SiteFile: site})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`:4: field "xcatiport": port "many" is not a number`,
		`:7: field "proto": unknown protocol "sctp"`,
		`:15: field "need": unknown need "maybe"`,
		`:3: field "httport": override of an unknown key "httport"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
}

// TestPortStringSaysWhereFrom: a dynamic row's port reads "(site)" when a
// site file or --port pins it, and "(learned)" once rpcbind gave it.
func TestPortStringSaysWhereFrom(t *testing.T) {
	c, err := Load(Options{Ports: []string{"mount-udp=33334"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ByKey("mount-udp/udp").PortString(); got != "33334 (site)" {
		t.Errorf("pinned by --port: %q", got)
	}
	learned, err := c.WithLearnedPort("mount-udp/udp", 20048)
	if err != nil {
		t.Fatal(err)
	}
	if got := learned.ByKey("mount-udp/udp").PortString(); got != "20048 (learned)" {
		t.Errorf("learned: %q", got)
	}
}
