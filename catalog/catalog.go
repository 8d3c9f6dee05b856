// Package catalog holds xCAT's port table as data: every row of the "Port
// Usage" table, the profiles that decide which rows are required, and the
// site overrides that move ports. The BPF loader fills its maps from it and
// the classifier judges traffic against it.
package catalog

import (
	_ "embed"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

//go:embed xcat-ports.yaml
var builtinYAML []byte

// MaxRowName bounds a row's name: it goes into every event, summary line
// and metric label, and a SIEM line must stay within what syslog receivers
// take (2048 octets, RFC 5426).
const MaxRowName = 64

// BuiltinFile is the name under which errors in the embedded table are reported.
const BuiltinFile = "catalog/xcat-ports.yaml"

// ServiceID is a row's stable small integer: the BPF map key and metric identity.
// Zero means "no catalog row".
type ServiceID uint16

const (
	// MaxServiceID bounds every id; the kernel's per-service arrays have
	// MaxServiceID+1 slots.
	MaxServiceID ServiceID = 1023
	// FirstSiteID is the first id given to a site-specific row; ids below it
	// belong to the built-in table.
	FirstSiteID ServiceID = 128
)

// Proto is an IP protocol number.
type Proto uint8

// The protocols a catalog row can name.
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// ParseProto reads "tcp" or "udp".
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp or udp)", s)
}

// Role names the kind of host that serves a port.
type Role string

// The server roles of xCAT's table.
const (
	RoleMN     Role = "mn"     // management or service node
	RoleCN     Role = "cn"     // compute node
	RoleBMC    Role = "bmc"    // baseboard management controller
	RoleSwitch Role = "switch" // switch or chassis management module
)

// Roles lists every role in a stable order.
var Roles = []Role{RoleMN, RoleCN, RoleBMC, RoleSwitch}

// Need is the table's own verdict on a row.
type Need string

// The values of the table's "Required or optional" column, summarised.
const (
	NeedRequired Need = "required"
	NeedOptional Need = "optional"
	NeedObsolete Need = "obsolete"
)

// Pattern says how a service's exchanges look on the wire.
type Pattern string

// Traffic patterns.
const (
	// PatternRequestReply: the answer comes from the port the client sent to.
	PatternRequestReply Pattern = "request-reply"
	// PatternOneWay: nothing answers (syslog/udp, snmptrap/udp); only an ICMP
	// error shows a block.
	PatternOneWay Pattern = "one-way"
	// PatternEphemeralReply: the answer comes from a new server port (TFTP),
	// matched by client address and port and server address.
	PatternEphemeralReply Pattern = "ephemeral-reply"
	// PatternBroadcast: DHCP/BOOTP, paired by transaction id and client
	// hardware address rather than by addresses.
	PatternBroadcast Pattern = "broadcast"
	// PatternClientPort: the client side of a broadcast service (bootpc);
	// its packets are the answers of the service that carries it.
	PatternClientPort Pattern = "client-port"
)

var patterns = []Pattern{PatternRequestReply, PatternOneWay, PatternEphemeralReply, PatternBroadcast, PatternClientPort}

// AlwaysRequired is the "when" value of a row required in every profile.
const AlwaysRequired = "always"

// Source values of an entry.
const (
	SourceXCAT      = "xcat"      // a row of xCAT's Port Usage table
	SourcePortwatch = "portwatch" // a row portwatch adds to the built-in table
)

// Entry is one row of the catalog.
type Entry struct {
	ID    ServiceID
	Name  string
	Proto Proto
	// Port and PortLast give the port or range; both are zero for a dynamic
	// row whose port is not known yet.
	Port, PortLast uint16
	Dynamic        bool
	Roles          []Role
	Need           Need
	// When lists the profiles in which a required row is required, or
	// holds AlwaysRequired.
	When      []string
	TableNeed string
	// PrivilegedSource is the table's Range column: clients connect from a
	// source port in 1-1023.
	PrivilegedSource bool
	OnWire           bool
	CarriedBy        string
	Pattern          Pattern
	SiteKey          string
	RPCProgram       uint32
	// Portmapper marks rpcbind, whose answers reveal the ports of the
	// dynamic rows (mountd).
	Portmapper  bool
	Description string
	// Source is SourceXCAT, SourcePortwatch or the site file that added it.
	Source string
	// File and Line locate the row's definition, for error messages.
	File string
	Line int
	// PortFile and PortLine locate the override that set Port (a site
	// file's ports: section, or "--port"); empty when the row's own.
	PortFile string
	PortLine int
}

// Key identifies a row: "name/proto".
func (e *Entry) Key() string { return e.Name + "/" + e.Proto.String() }

// HasPort reports whether the row has a known port (not an unlearned dynamic row).
func (e *Entry) HasPort() bool { return e.Port != 0 }

// PortString renders the port, range or "dynamic".
func (e *Entry) PortString() string {
	switch {
	case !e.HasPort():
		return "dynamic"
	case e.PortLast != e.Port:
		return fmt.Sprintf("%d-%d", e.Port, e.PortLast)
	case e.Dynamic && e.PortFile != "":
		return fmt.Sprintf("%d (site)", e.Port) // pinned by a site file or --port
	case e.Dynamic:
		return fmt.Sprintf("%d (learned)", e.Port)
	}
	return strconv.Itoa(int(e.Port))
}

// Contains reports whether port falls in the row's port or range.
func (e *Entry) Contains(port uint16) bool {
	return e.HasPort() && port >= e.Port && port <= e.PortLast
}

// ServesRole reports whether the row is served by a host of role r.
func (e *Entry) ServesRole(r Role) bool { return slices.Contains(e.Roles, r) }

// Profile is a named deployment kind; profiles combine.
type Profile struct {
	Name        string
	Aliases     []string
	Description string
}

// Status is a row's standing under the active profiles.
type Status string

// Statuses, from most to least demanding.
const (
	StatusRequired     Status = "required"       // a block is required_port_blocked
	StatusOptional     Status = "optional"       // in the table, optional
	StatusNotInProfile Status = "not-in-profile" // required only by profiles not active
	StatusObsolete     Status = "obsolete"       // listed as no longer used
)

// Catalog is an immutable view of the table under a set of active profiles
// and site overrides. Learning a dynamic port yields a new Catalog.
type Catalog struct {
	entries  []*Entry // ordered by ID
	byID     map[ServiceID]*Entry
	byKey    map[string]*Entry
	profiles []Profile
	defaults []string
	active   []string // canonical names of the active profiles
	required map[ServiceID]bool
	// ports maps a protocol and port to the row that serves it, for clients
	// from unprivileged ports and for clients from 1-1023.
	ports map[portKey]portRows
}

type portKey struct {
	proto Proto
	port  uint16
}

type portRows struct {
	any, privileged *Entry
}

// Entries returns every row, ordered by id.
func (c *Catalog) Entries() []*Entry { return c.entries }

// Entry returns the row with the given id, or nil.
func (c *Catalog) Entry(id ServiceID) *Entry { return c.byID[id] }

// ByKey returns the row named "name/proto", or nil.
func (c *Catalog) ByKey(key string) *Entry { return c.byKey[key] }

// Profiles returns every known profile.
func (c *Catalog) Profiles() []Profile { return c.profiles }

// DefaultProfiles returns the profiles used when none are given.
func (c *Catalog) DefaultProfiles() []string { return c.defaults }

// ActiveProfiles returns the canonical names of the active profiles.
func (c *Catalog) ActiveProfiles() []string { return c.active }

// Lookup returns the row serving (proto, port) for a client whose source port
// is srcPort, or nil. A port shared by two rows (rsh and syslog on tcp/514)
// is told apart by the table's Range column: a client from a privileged port
// reaches the row with the privileged-source range. Pass srcPort 0 when the
// client port is unknown.
func (c *Catalog) Lookup(proto Proto, port, srcPort uint16) *Entry {
	rows, ok := c.ports[portKey{proto, port}]
	if !ok {
		return nil
	}
	if srcPort != 0 && srcPort < 1024 && rows.privileged != nil {
		return rows.privileged
	}
	if rows.any != nil {
		return rows.any
	}
	return rows.privileged
}

// PortBinding is one (proto, port) of the catalog as the kernel maps hold it.
type PortBinding struct {
	Proto Proto
	Port  uint16
	// Service serves clients from any port; Privileged serves clients from
	// ports 1-1023 (equal to Service when no row is set apart by its range).
	Service, Privileged *Entry
}

// PortBindings lists every (proto, port) that a row names, ordered by
// protocol and port. Rows that never carry traffic are bound too: a packet
// to them is counted under the row, never called unexpected, and never
// alarms (the classifier asks Entry.OnWire).
func (c *Catalog) PortBindings() []PortBinding {
	out := make([]PortBinding, 0, len(c.ports))
	for k, rows := range c.ports {
		b := PortBinding{Proto: k.proto, Port: k.port, Service: rows.any, Privileged: rows.privileged}
		if b.Service == nil {
			b.Service = b.Privileged
		}
		if b.Privileged == nil {
			b.Privileged = b.Service
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// IsRequired reports whether a block of the row is required_port_blocked
// under the active profiles: the row is required in one of them, or it
// carries the requirement of such a row.
func (c *Catalog) IsRequired(e *Entry) bool { return c.required[e.ID] }

// Status returns the row's standing under the active profiles.
func (c *Catalog) Status(e *Entry) Status {
	switch {
	case c.required[e.ID]:
		return StatusRequired
	case e.Need == NeedObsolete:
		return StatusObsolete
	case e.Need == NeedRequired:
		return StatusNotInProfile
	}
	return StatusOptional
}

// Required returns the rows required under the active profiles, by id.
func (c *Catalog) Required() []*Entry {
	var out []*Entry
	for _, e := range c.entries {
		if c.required[e.ID] {
			out = append(out, e)
		}
	}
	return out
}

// Expected reports whether traffic on (proto, port) is accounted for by the
// catalog: some non-obsolete row serves it. Traffic answered on any other
// port is "unexpected".
func (c *Catalog) Expected(proto Proto, port uint16) bool {
	rows, ok := c.ports[portKey{proto, port}]
	if !ok {
		return false
	}
	return (rows.any != nil && rows.any.Need != NeedObsolete) ||
		(rows.privileged != nil && rows.privileged.Need != NeedObsolete)
}

// WithLearnedPort returns a catalog in which the dynamic row key ("mount-udp/udp")
// has the given port, as learned from rpcbind. Learning the port a row
// already has returns c itself.
func (c *Catalog) WithLearnedPort(key string, port uint16) (*Catalog, error) {
	e := c.byKey[key]
	if e == nil {
		return nil, fmt.Errorf("learned port for %s: no such catalog row", key)
	}
	if !e.Dynamic {
		return nil, fmt.Errorf("learned port for %s: the row has a fixed port", key)
	}
	if port == 0 {
		return nil, fmt.Errorf("learned port for %s: port 0", key)
	}
	if e.Port == port && e.PortLast == port {
		return c, nil
	}
	rows := make([]*Entry, len(c.entries))
	for i, old := range c.entries {
		cp := *old
		if old == e {
			cp.Port, cp.PortLast = port, port
			cp.PortFile, cp.PortLine = "", 0 // learned, no longer the site's
		}
		rows[i] = &cp
	}
	return build(rows, c.profiles, c.defaults, c.active)
}

// canonicalProfile resolves a profile name or alias.
func canonicalProfile(profiles []Profile, name string) (string, bool) {
	name = strings.ToLower(strings.TrimSpace(name))
	for _, p := range profiles {
		if p.Name == name || slices.Contains(p.Aliases, name) {
			return p.Name, true
		}
	}
	return "", false
}

func profileNames(profiles []Profile) string {
	var names []string
	for _, p := range profiles {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// build indexes rows and computes what the active profiles require.
func build(rows []*Entry, profiles []Profile, defaults, active []string) (*Catalog, error) {
	c := &Catalog{
		entries:  rows,
		byID:     make(map[ServiceID]*Entry, len(rows)),
		byKey:    make(map[string]*Entry, len(rows)),
		profiles: profiles,
		defaults: defaults,
		active:   active,
		required: make(map[ServiceID]bool),
		ports:    make(map[portKey]portRows),
	}
	sort.SliceStable(c.entries, func(i, j int) bool { return c.entries[i].ID < c.entries[j].ID })
	for _, e := range c.entries {
		if prev := c.byID[e.ID]; prev != nil {
			return nil, &Error{File: e.File, Line: e.Line, Field: "id",
				Msg: fmt.Sprintf("duplicate row: id %d is already %s (%s)", e.ID, prev.Key(), prev.where())}
		}
		c.byID[e.ID] = e
		if prev := c.byKey[e.Key()]; prev != nil {
			return nil, &Error{File: e.File, Line: e.Line, Field: "name",
				Msg: fmt.Sprintf("duplicate row: %s is already defined (%s)", e.Key(), prev.where())}
		}
		c.byKey[e.Key()] = e
	}
	for _, e := range c.entries {
		if e.CarriedBy == "" {
			continue
		}
		if c.byKey[e.CarriedBy] == nil {
			return nil, &Error{File: e.File, Line: e.Line, Field: "carried_by",
				Msg: fmt.Sprintf("no row %s in the catalog", e.CarriedBy)}
		}
	}
	if err := c.bindPorts(); err != nil {
		return nil, err
	}
	for _, e := range c.entries {
		if !requiredIn(e, active) {
			continue
		}
		// The requirement follows carried_by to the row whose traffic
		// really shows it (dhcpc/tcp -> bootpc/udp -> bootps/udp).
		seen := map[string]bool{}
		for r := e; r != nil && !seen[r.Key()]; r = c.byKey[r.CarriedBy] {
			seen[r.Key()] = true
			c.required[r.ID] = true
		}
	}
	return c, nil
}

func requiredIn(e *Entry, active []string) bool {
	if e.Need != NeedRequired {
		return false
	}
	for _, w := range e.When {
		if w == AlwaysRequired || slices.Contains(active, w) {
			return true
		}
	}
	return false
}

// maxRangePorts bounds a site row's port range, so a typo such as 1-65535
// cannot claim every port.
const maxRangePorts = 4096

func (c *Catalog) bindPorts() error {
	for _, e := range c.entries {
		if !e.HasPort() {
			continue
		}
		for p := uint32(e.Port); p <= uint32(e.PortLast); p++ {
			k := portKey{e.Proto, uint16(p)}
			rows := c.ports[k]
			slot := &rows.any
			if e.PrivilegedSource {
				slot = &rows.privileged
			}
			if prev := *slot; prev != nil {
				return duplicatePort(e, prev, p)
			}
			*slot = e
			c.ports[k] = rows
		}
	}
	return nil
}

// duplicatePort is the error of two rows on one port. When an override
// moved one of them there, the override is to blame, not the row.
func duplicatePort(e, prev *Entry, port uint32) error {
	moved, other := e, prev
	if e.PortFile == "" && prev.PortFile != "" {
		moved, other = prev, e
	}
	if moved.PortFile != "" {
		key := moved.SiteKey
		if key == "" {
			key = moved.Name
		}
		return &Error{File: moved.PortFile, Line: moved.PortLine, Field: key,
			Msg: fmt.Sprintf("duplicate row: this moves %s to %s/%d, which %s already serves (%s)", moved.Key(), moved.Proto, port, other.Key(), other.where())}
	}
	return &Error{File: e.File, Line: e.Line, Field: "port",
		Msg: fmt.Sprintf("duplicate row: %s/%d is already served by %s (%s)", e.Proto, port, prev.Key(), prev.where())}
}

func (e *Entry) where() string {
	if e.Line == 0 {
		return e.File
	}
	return fmt.Sprintf("%s:%d", e.File, e.Line)
}

// WithRPCPort applies a port that rpcbind gave out for an RPC program: the
// dynamic row of that program and protocol (mountd over UDP, say) takes it.
// It returns the catalog unchanged, and false, when no row learns from it or
// the row already has that port.
func (c *Catalog) WithRPCPort(program uint32, proto Proto, port uint16) (*Catalog, bool) {
	for _, e := range c.entries {
		if !e.Dynamic || e.RPCProgram != program || e.Proto != proto || e.CarriedBy != "" {
			continue
		}
		if e.Port == port {
			return c, false
		}
		next, err := c.WithLearnedPort(e.Key(), port)
		if err != nil {
			// The port is taken by a fixed row: keep the catalog as it is.
			return c, false
		}
		return next, true
	}
	return c, false
}
