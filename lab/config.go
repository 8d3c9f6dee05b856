// Package lab builds an xCAT management network on one machine, out of
// network namespaces, with real daemons, real clients and an nftables
// firewall between them: portwatch's ground truth and its demo.
//
// The topology (see README.md for the diagram):
//
//	nodes n001..nNNN ── bridge namespace "br" ── fw (router, nftables) ── mn
//	                                              ├── bmc (IPMI simulator)
//	                                              └── sw  (SNMP agent)
//
// Every namespace name starts with a configurable prefix, so several labs
// and other people's tests can run side by side. Up builds a lab, Down (or
// the package function Down with a prefix) removes it, even after the
// process that built it was killed.
package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// DefaultPrefix starts every name the lab creates, unless Config.Prefix says
// otherwise.
const DefaultPrefix = "pwl-"

// Node counts the lab accepts.
const (
	DefaultNodes = 4
	MaxNodes     = 200
)

// Config says what lab to build.
type Config struct {
	// Prefix starts the name of every namespace; it also names the run
	// directory (RunDirFor). Lowercase letters and digits ending in '-', at most 12
	// characters. Empty means DefaultPrefix.
	Prefix string
	// Nodes is the number of compute nodes, 1..MaxNodes; 0 means DefaultNodes.
	Nodes int
	// Scenario is loaded into the firewall when the lab is up; empty means
	// "open".
	Scenario string
	// ReadyTimeout bounds the wait for each daemon to listen; 0 means 10 s.
	ReadyTimeout time.Duration
	// Logf, when set, receives one line per step of Up and Down.
	Logf func(format string, args ...any)

	// breakDaemon makes the named daemon's configuration invalid, so that
	// tests can watch a failing Up clean up after itself.
	breakDaemon string
}

var prefixPattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,10}-$`)

// withDefaults fills the zero fields and validates the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if err := ValidatePrefix(c.Prefix); err != nil {
		return c, err
	}
	if c.Nodes == 0 {
		c.Nodes = DefaultNodes
	}
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		return c, fmt.Errorf("lab: %d nodes asked for; the lab builds 1 to %d", c.Nodes, MaxNodes)
	}
	if c.Scenario == "" {
		c.Scenario = "open"
	}
	if _, err := ScenarioByName(c.Scenario); err != nil {
		return c, err
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 10 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c, nil
}

// ValidatePrefix checks a name prefix: lowercase letters and digits ending
// in '-', so that no prefix is the start of another one's names.
func ValidatePrefix(prefix string) error {
	if !prefixPattern.MatchString(prefix) {
		return fmt.Errorf("lab: prefix %q: use 1 to 11 lowercase letters or digits, starting with a letter and followed by '-' (e.g. %q)", prefix, DefaultPrefix)
	}
	return nil
}

// RunDirFor is where a lab with this prefix keeps the daemons'
// configuration, logs and served files; Down removes it.
func RunDirFor(prefix string) string {
	return filepath.Join(os.TempDir(), "portwatch-lab."+strings.TrimSuffix(prefix, "-"))
}

// Role is what a host of the lab does.
type Role string

// The lab's hosts.
const (
	RoleMN     Role = "mn"  // management node: every xCAT service
	RoleFW     Role = "fw"  // router and firewall
	RoleBridge Role = "br"  // the nodes' layer-2 segment
	RoleBMC    Role = "bmc" // baseboard management controller (IPMI)
	RoleSwitch Role = "sw"  // switch management (SNMP)
	RoleNode   Role = "node"
)

// Host is one namespace of the lab and its address on its segment.
type Host struct {
	Name  string // "mn", "fw", "n001"
	Role  Role
	Netns string // prefix + Name
	// Iface is the host's interface on its segment (fw has several: see
	// Lab.FWNodeInterface).
	Iface string
	Addr  netip.Addr // invalid for the bridge namespace
	MAC   net.HardwareAddr
}

// Interface names a network interface inside a namespace: where an
// observer attaches.
type Interface struct {
	Netns string
	Name  string
}

func (i Interface) String() string { return i.Netns + "/" + i.Name }

// Interface names inside the namespaces. Every namespace has its own name
// space for links, so these never collide between labs.
const (
	hostIface     = "eth0"    // mn, bmc, sw and every node
	fwMgmtIface   = "mgmt0"   // fw, towards mn
	fwNodesIface  = "nodes0"  // fw, towards the nodes: the one link that carries all node traffic
	fwBMCIface    = "bmc0"    // fw, towards the BMC
	fwSwitchIface = "sw0"     // fw, towards the switch
	brUplinkIface = "uplink0" // br, towards fw
	bridgeIface   = "br0"     // br: the bridge joining the nodes and the uplink
)

// The address plan: four routed /24s behind fw. Every lab uses the same
// addresses; they never meet because each lab has its own namespaces.
var (
	MgmtNet   = netip.MustParsePrefix("10.77.0.0/24")
	NodeNet   = netip.MustParsePrefix("10.77.1.0/24")
	BMCNet    = netip.MustParsePrefix("10.77.2.0/24")
	SwitchNet = netip.MustParsePrefix("10.77.3.0/24")
	// LabNet covers the four; hosts route it, and nothing else, via fw.
	LabNet = netip.MustParsePrefix("10.77.0.0/16")
)

// Host octets on each segment.
const (
	routerOctet = 1  // fw's address on every segment
	serverOctet = 10 // mn, bmc and sw
	// The first node is .11, the 200th .210.
	firstNodeOctet = 11
	// Unknown DHCP clients get an address in .220-.250.
	poolFirstOctet = 220
	poolLastOctet  = 250
)

// DNSDomain is the domain the lab's DNS serves (RFC 2606 reserves .test).
const DNSDomain = "cluster.test"

// MountdPort is the port the lab's mountd registers with rpcbind. xCAT's
// table calls mountd's port dynamic; sites pin it (rpc.mountd --port), and
// so does the lab, so that the firewall can allow it.
const MountdPort = 20048

func addrIn(p netip.Prefix, octet int) netip.Addr {
	a := p.Addr().As4()
	a[3] = byte(octet)
	return netip.AddrFrom4(a)
}

// macFor gives every addressed interface a stable, locally administered MAC
// (02:70:77:<segment>:00:<host octet>), so captures read the same in every run.
func macFor(p netip.Prefix, octet int) net.HardwareAddr {
	seg := p.Addr().As4()[2]
	return net.HardwareAddr{0x02, 0x70, 0x77, seg, 0x00, byte(octet)}
}

// NodeName is the name of node i (1-based): n001 .. n200.
func NodeName(i int) string { return fmt.Sprintf("n%03d", i) }

// topology is the fixed shape of a lab with a given prefix and size.
type topology struct {
	prefix string
	mn     Host
	fw     Host // Addr and Iface: fw's address on the management side
	br     Host
	bmc    Host
	sw     Host
	nodes  []Host
}

func newTopology(prefix string, nodes int) *topology {
	t := &topology{prefix: prefix}
	host := func(name string, role Role, iface string, net netip.Prefix, octet int) Host {
		return Host{Name: name, Role: role, Netns: prefix + name, Iface: iface,
			Addr: addrIn(net, octet), MAC: macFor(net, octet)}
	}
	t.mn = host("mn", RoleMN, hostIface, MgmtNet, serverOctet)
	t.fw = host("fw", RoleFW, fwMgmtIface, MgmtNet, routerOctet)
	t.br = Host{Name: "br", Role: RoleBridge, Netns: prefix + "br", Iface: bridgeIface}
	t.bmc = host("bmc", RoleBMC, hostIface, BMCNet, serverOctet)
	t.sw = host("sw", RoleSwitch, hostIface, SwitchNet, serverOctet)
	for i := 1; i <= nodes; i++ {
		t.nodes = append(t.nodes, host(NodeName(i), RoleNode, hostIface, NodeNet, firstNodeOctet+i-1))
	}
	return t
}

// infra lists the namespaces other than the nodes, in creation order.
func (t *topology) infra() []Host { return []Host{t.br, t.fw, t.mn, t.bmc, t.sw} }

// all lists every namespace of the lab.
func (t *topology) all() []Host { return append(t.infra(), t.nodes...) }

// labNetnsPattern matches exactly the namespace names a lab with some
// prefix creates, and nothing else: prefix + role, or prefix + node name.
func labNetnsPattern(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `(mn|fw|br|bmc|sw|n[0-9]{3})$`)
}
