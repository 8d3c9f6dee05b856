package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Error is bad catalog input, located by file, line and field.
type Error struct {
	File  string // a file name, or a flag such as "--port"
	Line  int    // 1-based; 0 when there is no line
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Options select the profiles and the site overrides of a catalog.
type Options struct {
	// Profiles are profile names or aliases; none means the defaults.
	Profiles []string
	// SiteFile is a YAML override file (see the README, "Site overrides").
	SiteFile string
	// SiteTable is the output of xCAT's `tabdump site`, whose xcatdport,
	// xcatiport, xcatlport and httpport keys move ports.
	SiteTable string
	// Ports are KEY=PORT overrides from the command line; they win over
	// both files.
	Ports []string
}

// Load builds the catalog from the built-in table and the given overrides.
func Load(o Options) (*Catalog, error) {
	return load(builtinYAML, BuiltinFile, o)
}

func load(builtin []byte, builtinName string, o Options) (*Catalog, error) {
	base, err := parseCatalogFile(builtin, builtinName)
	if err != nil {
		return nil, err
	}
	for _, e := range base.rows {
		if e.ID >= FirstSiteID {
			return nil, &Error{File: e.File, Line: e.Line, Field: "id",
				Msg: fmt.Sprintf("id %d is for site rows; built-in rows use 1-%d", e.ID, FirstSiteID-1)}
		}
	}
	rows := base.rows
	if o.SiteTable != "" {
		data, err := os.ReadFile(o.SiteTable)
		if err != nil {
			return nil, fmt.Errorf("reading site table: %w", err)
		}
		overrides, err := ParseSiteTable(data, o.SiteTable)
		if err != nil {
			return nil, err
		}
		if err := applyPortOverrides(rows, overrides); err != nil {
			return nil, err
		}
	}
	if o.SiteFile != "" {
		// Every mistake of the file at once: what parsed is still checked
		// against the table (unknown keys, unknown profiles).
		site, err := ReadSiteFile(o.SiteFile)
		if site == nil {
			return nil, err
		}
		errs := []error{err}
		errs = append(errs, applyPortOverrides(rows, site.Ports))
		errs = append(errs, resolveWhen(site.Services, base.profiles))
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		rows = append(rows, site.Services...)
	}
	if len(o.Ports) > 0 {
		overrides, err := ParsePortFlags(o.Ports)
		if err != nil {
			return nil, err
		}
		if err := applyPortOverrides(rows, overrides); err != nil {
			return nil, err
		}
	}
	assignSiteIDs(rows)
	active, err := resolveProfiles(base.profiles, base.defaults, o.Profiles)
	if err != nil {
		return nil, err
	}
	return build(rows, base.profiles, base.defaults, active)
}

func resolveProfiles(profiles []Profile, defaults, names []string) ([]string, error) {
	if len(names) == 0 {
		names = defaults
	}
	var active []string
	for _, n := range names {
		for _, part := range strings.Split(n, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			canon, ok := canonicalProfile(profiles, part)
			if !ok {
				return nil, &Error{File: "--profile", Msg: fmt.Sprintf("unknown profile %q (known: %s)", strings.TrimSpace(part), profileNames(profiles))}
			}
			if !slices.Contains(active, canon) {
				active = append(active, canon)
			}
		}
	}
	if len(active) == 0 {
		return nil, &Error{File: "--profile", Msg: "no profile given (known: " + profileNames(profiles) + ")"}
	}
	return active, nil
}

// assignSiteIDs gives site rows without an id the next free ids from
// FirstSiteID, in file order, so that ids stay stable while the file does.
func assignSiteIDs(rows []*Entry) {
	used := map[ServiceID]bool{}
	for _, e := range rows {
		used[e.ID] = true
	}
	next := FirstSiteID
	for _, e := range rows {
		if e.ID != 0 {
			continue
		}
		for used[next] {
			next++
		}
		e.ID = next
		used[next] = true
	}
}

// PortOverride moves the rows of a site key (or fixes a dynamic row) to a port.
type PortOverride struct {
	Key  string
	Port uint16
	File string
	Line int
}

func applyPortOverrides(rows []*Entry, overrides []PortOverride) error {
	var errs []error
	for _, o := range overrides {
		matched := false
		for _, e := range rows {
			if (e.SiteKey != "" && e.SiteKey == o.Key) || (e.Dynamic && e.Name == o.Key) {
				e.Port, e.PortLast = o.Port, o.Port
				e.PortFile, e.PortLine = o.File, o.Line
				matched = true
			}
		}
		if !matched {
			errs = append(errs, &Error{File: o.File, Line: o.Line, Field: o.Key,
				Msg: fmt.Sprintf("override of an unknown key %q (known: %s)", o.Key, strings.Join(overrideKeys(rows), ", "))})
		}
	}
	return errors.Join(errs...)
}

// overrideKeys lists the keys a port override may name.
func overrideKeys(rows []*Entry) []string {
	var keys []string
	for _, e := range rows {
		k := e.SiteKey
		if k == "" && e.Dynamic && e.RPCProgram != 0 && e.CarriedBy == "" {
			k = e.Name
		}
		if k != "" && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// ParsePortFlags reads KEY=PORT values of the --port flag.
func ParsePortFlags(values []string) ([]PortOverride, error) {
	var out []PortOverride
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			key, val, ok := strings.Cut(item, "=")
			if !ok || strings.TrimSpace(key) == "" {
				return nil, &Error{File: "--port", Msg: fmt.Sprintf("%q: want KEY=PORT, as in xcatdport=3011", item)}
			}
			port, err := parseSinglePort(strings.TrimSpace(val))
			if err != nil {
				return nil, &Error{File: "--port", Field: strings.TrimSpace(key), Msg: err.Error()}
			}
			out = append(out, PortOverride{Key: strings.TrimSpace(key), Port: port, File: "--port"})
		}
	}
	return out, nil
}

func parseSinglePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range (1-65535)", n)
	}
	return uint16(n), nil
}

// parsePortField reads a row's port: a number, "first-last" or "dynamic".
func parsePortField(s string) (first, last uint16, dynamic bool, err error) {
	s = strings.TrimSpace(s)
	if s == "dynamic" {
		return 0, 0, true, nil
	}
	if a, b, ok := strings.Cut(s, "-"); ok {
		first, err = parseSinglePort(strings.TrimSpace(a))
		if err != nil {
			return 0, 0, false, err
		}
		last, err = parseSinglePort(strings.TrimSpace(b))
		if err != nil {
			return 0, 0, false, err
		}
		if last < first {
			return 0, 0, false, fmt.Errorf("port range %q runs backwards", s)
		}
		if int(last)-int(first)+1 > maxRangePorts {
			return 0, 0, false, fmt.Errorf("port range %q has %d ports; at most %d", s, int(last)-int(first)+1, maxRangePorts)
		}
		return first, last, false, nil
	}
	first, err = parseSinglePort(s)
	return first, first, false, err
}

// catalogFile is a parsed catalog YAML file.
type catalogFile struct {
	profiles []Profile
	defaults []string
	rows     []*Entry
}

// SiteOverrides is a parsed site override file.
type SiteOverrides struct {
	Ports    []PortOverride
	Services []*Entry
}

// ReadSiteFile parses a site override file.
func ReadSiteFile(path string) (*SiteOverrides, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading site overrides: %w", err)
	}
	return ParseSiteFile(data, path)
}

// ParseSiteFile parses the YAML of a site override file named name.
func ParseSiteFile(data []byte, name string) (*SiteOverrides, error) {
	root, err := parseYAML(data, name)
	if err != nil {
		return nil, err
	}
	out := &SiteOverrides{}
	if root == nil {
		return out, nil
	}
	err = eachField(root, name, map[string]func(*yaml.Node) error{
		"ports": func(v *yaml.Node) error {
			if v.Kind != yaml.MappingNode {
				return nodeErr(name, v, "ports", "want a mapping of KEY: PORT")
			}
			var errs []error
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, val := v.Content[i], v.Content[i+1]
				port, err := parseSinglePort(val.Value)
				if err != nil || val.Kind != yaml.ScalarNode {
					if err == nil {
						err = errors.New("want a port number")
					}
					errs = append(errs, nodeErr(name, val, k.Value, err.Error()))
					continue
				}
				out.Ports = append(out.Ports, PortOverride{Key: k.Value, Port: port, File: name, Line: val.Line})
			}
			return errors.Join(errs...)
		},
		"services": func(v *yaml.Node) error {
			rows, err := parseRows(v, name, false)
			out.Services = rows
			return err
		},
	})
	return out, err
}

func parseCatalogFile(data []byte, name string) (*catalogFile, error) {
	root, err := parseYAML(data, name)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &Error{File: name, Msg: "empty catalog"}
	}
	out := &catalogFile{}
	err = eachField(root, name, map[string]func(*yaml.Node) error{
		"profiles": func(v *yaml.Node) error {
			p, err := parseProfiles(v, name)
			out.profiles = p
			return err
		},
		"default_profiles": func(v *yaml.Node) error {
			d, err := stringList(v, name, "default_profiles")
			out.defaults = d
			return err
		},
		"services": func(v *yaml.Node) error {
			rows, err := parseRows(v, name, true)
			out.rows = rows
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	for _, d := range out.defaults {
		if _, ok := canonicalProfile(out.profiles, d); !ok {
			return nil, &Error{File: name, Field: "default_profiles", Msg: fmt.Sprintf("unknown profile %q", d)}
		}
	}
	if err := resolveWhen(out.rows, out.profiles); err != nil {
		return nil, err
	}
	return out, nil
}

// resolveWhen checks the profiles of each row's "when" and replaces aliases
// by canonical names.
func resolveWhen(rows []*Entry, profiles []Profile) error {
	var errs []error
	for _, e := range rows {
		for i, w := range e.When {
			if w == AlwaysRequired {
				continue
			}
			canon, ok := canonicalProfile(profiles, w)
			if !ok {
				errs = append(errs, &Error{File: e.File, Line: e.Line, Field: "when",
					Msg: fmt.Sprintf("unknown profile %q (known: %s, %s)", w, AlwaysRequired, profileNames(profiles))})
				continue
			}
			e.When[i] = canon
		}
	}
	return errors.Join(errs...)
}

func parseYAML(data []byte, name string) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return nil, nil
		}
		return nil, yamlSyntaxError(name, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: name, Line: root.Line, Msg: "want a mapping at the top level"}
	}
	return root, nil
}

// yamlSyntaxError turns the parser's "yaml: line N: msg" into a located Error.
func yamlSyntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	return &Error{File: file, Line: line, Msg: "not valid YAML: " + msg}
}

func nodeErr(file string, n *yaml.Node, field, msg string) error {
	return &Error{File: file, Line: n.Line, Field: field, Msg: msg}
}

// eachField walks a mapping, calling the handler of each key; an unknown key
// or a repeated one is an error. It goes on after an error and returns them
// all, joined.
func eachField(m *yaml.Node, file string, handlers map[string]func(*yaml.Node) error) error {
	seen := map[string]bool{}
	var errs []error // every field's, so that one run shows every mistake
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		h, ok := handlers[k.Value]
		if !ok {
			var known []string
			for name := range handlers {
				known = append(known, name)
			}
			slices.Sort(known)
			errs = append(errs, nodeErr(file, k, k.Value, "unknown field (known: "+strings.Join(known, ", ")+")"))
			continue
		}
		if seen[k.Value] {
			errs = append(errs, nodeErr(file, k, k.Value, "given twice"))
			continue
		}
		seen[k.Value] = true
		if err := h(v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func stringList(v *yaml.Node, file, field string) ([]string, error) {
	if v.Kind == yaml.ScalarNode {
		return []string{v.Value}, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, nodeErr(file, v, field, "want a list")
	}
	var out []string
	for _, item := range v.Content {
		if item.Kind != yaml.ScalarNode {
			return nil, nodeErr(file, item, field, "want a list of words")
		}
		out = append(out, item.Value)
	}
	return out, nil
}

func parseProfiles(v *yaml.Node, file string) ([]Profile, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, nodeErr(file, v, "profiles", "want a list")
	}
	var out []Profile
	for _, item := range v.Content {
		if item.Kind != yaml.MappingNode {
			return nil, nodeErr(file, item, "profiles", "want a mapping per profile")
		}
		var p Profile
		err := eachField(item, file, map[string]func(*yaml.Node) error{
			"name":        func(n *yaml.Node) error { p.Name = n.Value; return nil },
			"description": func(n *yaml.Node) error { p.Description = n.Value; return nil },
			"aliases": func(n *yaml.Node) error {
				a, err := stringList(n, file, "aliases")
				p.Aliases = a
				return err
			},
		})
		if err != nil {
			return nil, err
		}
		if p.Name == "" {
			return nil, nodeErr(file, item, "name", "missing")
		}
		out = append(out, p)
	}
	return out, nil
}

// parseRows reads a list of service rows. builtin rows must give an id and
// may use "source"; site rows may leave the id out.
func parseRows(v *yaml.Node, file string, builtin bool) ([]*Entry, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, nodeErr(file, v, "services", "want a list of rows")
	}
	var out []*Entry
	var errs []error
	for _, item := range v.Content {
		e, err := parseRow(item, file, builtin)
		if err != nil {
			errs = append(errs, err) // and on to the next row
			continue
		}
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

func parseRow(item *yaml.Node, file string, builtin bool) (*Entry, error) {
	if item.Kind != yaml.MappingNode {
		return nil, nodeErr(file, item, "services", "want a mapping per row")
	}
	e := &Entry{OnWire: true, Pattern: PatternRequestReply, File: file, Line: item.Line, Source: file}
	if builtin {
		e.Source = SourceXCAT
	}
	var hasProto, hasPort bool
	var portNode *yaml.Node
	scalar := func(field string, set func(string) error) func(*yaml.Node) error {
		return func(n *yaml.Node) error {
			if n.Kind != yaml.ScalarNode {
				return nodeErr(file, n, field, "want a single value")
			}
			if err := set(n.Value); err != nil {
				return nodeErr(file, n, field, err.Error())
			}
			return nil
		}
	}
	handlers := map[string]func(*yaml.Node) error{
		"id": scalar("id", func(s string) error {
			n, err := strconv.ParseUint(s, 10, 16)
			if err != nil || n == 0 || n > uint64(MaxServiceID) {
				return fmt.Errorf("id %q: want a number from 1 to %d", s, MaxServiceID)
			}
			if !builtin && n < uint64(FirstSiteID) {
				return fmt.Errorf("id %d is reserved for the built-in table; site rows use %d-%d", n, FirstSiteID, MaxServiceID)
			}
			e.ID = ServiceID(n)
			return nil
		}),
		"name": scalar("name", func(s string) error {
			if strings.TrimSpace(s) == "" {
				return errors.New("empty name")
			}
			if strings.ContainsRune(s, '/') || strings.IndexFunc(s, unicode.IsControl) >= 0 {
				return fmt.Errorf("name %q may not hold '/' or control characters", s)
			}
			if n := utf8.RuneCountInString(s); n > MaxRowName {
				return fmt.Errorf("name of %d characters: at most %d (it goes into every event and metric label)", n, MaxRowName)
			}
			e.Name = s
			return nil
		}),
		"proto": scalar("proto", func(s string) error {
			p, err := ParseProto(s)
			e.Proto, hasProto = p, err == nil
			return err
		}),
		"port": func(n *yaml.Node) error {
			portNode = n
			return scalar("port", func(s string) error {
				first, last, dyn, err := parsePortField(s)
				e.Port, e.PortLast, e.Dynamic, hasPort = first, last, dyn, err == nil
				return err
			})(n)
		},
		"roles": func(n *yaml.Node) error {
			roles, err := stringList(n, file, "roles")
			if err != nil {
				return err
			}
			for _, r := range roles {
				if !slices.Contains(Roles, Role(r)) {
					return nodeErr(file, n, "roles", fmt.Sprintf("unknown role %q (known: mn, cn, bmc, switch)", r))
				}
				e.Roles = append(e.Roles, Role(r))
			}
			return nil
		},
		"need": scalar("need", func(s string) error {
			switch Need(s) {
			case NeedRequired, NeedOptional, NeedObsolete:
				e.Need = Need(s)
				return nil
			}
			return fmt.Errorf("unknown need %q (want required, optional or obsolete)", s)
		}),
		"when": func(n *yaml.Node) error {
			w, err := stringList(n, file, "when")
			e.When = w
			return err
		},
		"table_need": scalar("table_need", func(s string) error { e.TableNeed = s; return nil }),
		"range": scalar("range", func(s string) error {
			switch s {
			case "":
			case "1-1023":
				e.PrivilegedSource = true
			default:
				return fmt.Errorf("range %q: the only source range the table knows is 1-1023", s)
			}
			return nil
		}),
		"on_wire": scalar("on_wire", func(s string) error {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("%q: want true or false", s)
			}
			e.OnWire = b
			return nil
		}),
		"carried_by": scalar("carried_by", func(s string) error {
			name, proto, ok := strings.Cut(s, "/")
			if _, err := ParseProto(proto); !ok || name == "" || err != nil {
				return fmt.Errorf("%q: want name/proto, as in bootps/udp", s)
			}
			e.CarriedBy = s
			return nil
		}),
		"pattern": scalar("pattern", func(s string) error {
			if !slices.Contains(patterns, Pattern(s)) {
				return fmt.Errorf("unknown pattern %q (known: %s)", s, joinPatterns())
			}
			e.Pattern = Pattern(s)
			return nil
		}),
		"site_key": scalar("site_key", func(s string) error { e.SiteKey = s; return nil }),
		"rpc_program": scalar("rpc_program", func(s string) error {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return fmt.Errorf("%q: want an RPC program number", s)
			}
			e.RPCProgram = uint32(n)
			return nil
		}),
		"description": scalar("description", func(s string) error { e.Description = s; return nil }),
		"portmapper": scalar("portmapper", func(s string) error {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("%q: want true or false", s)
			}
			e.Portmapper = b
			return nil
		}),
	}
	if builtin {
		handlers["source"] = scalar("source", func(s string) error {
			if s != SourcePortwatch {
				return fmt.Errorf("unknown source %q", s)
			}
			e.Source = s
			return nil
		})
	}
	if err := eachField(item, file, handlers); err != nil {
		return nil, err
	}
	missing := func(field string) error { return nodeErr(file, item, field, "missing") }
	switch {
	case builtin && e.ID == 0:
		return nil, missing("id")
	case e.Name == "":
		return nil, missing("name")
	case !hasProto:
		return nil, missing("proto")
	case !hasPort:
		return nil, missing("port")
	case len(e.Roles) == 0:
		return nil, missing("roles")
	case e.Need == "":
		return nil, missing("need")
	}
	if e.Dynamic && e.RPCProgram == 0 {
		return nil, nodeErr(file, portNode, "port", "a dynamic port needs rpc_program, the RPC program whose port rpcbind reports")
	}
	if e.Need == NeedRequired && len(e.When) == 0 {
		return nil, nodeErr(file, item, "when", "a required row needs when: [always] or the profiles that require it")
	}
	if e.Need != NeedRequired && len(e.When) > 0 {
		return nil, nodeErr(file, item, "when", fmt.Sprintf("only a required row has profiles; this one is %s", e.Need))
	}
	if !builtin {
		e.Source = file
	}
	return e, nil
}

func joinPatterns() string {
	var s []string
	for _, p := range patterns {
		s = append(s, string(p))
	}
	return strings.Join(s, ", ")
}
