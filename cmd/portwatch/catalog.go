package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"portwatch/catalog"
)

func init() {
	register(&command{
		name:    "catalog",
		summary: "print the active port catalog, or check a site override file",
		usage: []string{
			"catalog [--profile P,...] [--site FILE] [--port KEY=PORT] [--format table|json|yaml]",
			"catalog check FILE",
		},
		about: `
The catalog is xCAT's Port Usage table as data: every row, with the host that
serves it, the profiles that require it and how its traffic looks on the wire.
STATUS is the row's standing under the active profiles: required (a block is
reported as required_port_blocked), optional, not-in-profile (required only by
profiles not active) or obsolete. WIRE is the traffic pattern, or "never" for
rows xCAT lists but no implementation sends packets to (they never alarm; the
row named in CARRIED BY has their traffic).

'catalog check FILE' validates a site override file and says what it changes;
a bad file is reported with its line and field, and the exit status is 2.`,
		setup: setupCatalog,
	})
}

func setupCatalog(fs *pflag.FlagSet) func(*env, []string) int {
	var cf catalog.Flags
	cf.Register(fs)
	format := fs.String("format", "table", "output `FORMAT`: table, json or yaml")
	return func(e *env, args []string) int {
		if len(args) > 0 && args[0] == "check" {
			if len(args) != 2 {
				e.errorf("catalog check: want one FILE, got %d arguments", len(args)-1)
				return exitUsage
			}
			return catalogCheck(e, cf, args[1])
		}
		if len(args) > 0 {
			e.errorf("catalog: unexpected argument %q (see 'portwatch catalog --help')", args[0])
			return exitUsage
		}
		cat, err := cf.Load()
		if err != nil {
			e.errorList(err)
			return exitUsage
		}
		switch *format {
		case "table":
			writeCatalogTable(e.stdout, cat)
		case "json":
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(catalogDocument(cat)); err != nil {
				e.errorf("%v", err)
				return exitFailure
			}
		case "yaml":
			enc := yaml.NewEncoder(e.stdout)
			enc.SetIndent(2)
			if err := enc.Encode(catalogDocument(cat)); err != nil {
				e.errorf("%v", err)
				return exitFailure
			}
		default:
			e.errorf("--format %q: want table, json or yaml", *format)
			return exitUsage
		}
		return exitOK
	}
}

func catalogCheck(e *env, cf catalog.Flags, path string) int {
	// Loading parses the file and checks what it means against the table:
	// unknown keys, ports taken by another row, unknown profiles.
	o := cf.Options()
	o.SiteFile = path
	_, err := catalog.Load(o)
	var site *catalog.SiteOverrides
	if err == nil {
		site, err = catalog.ReadSiteFile(path)
	}
	if err != nil {
		e.errorList(err)
		return exitUsage
	}
	fmt.Fprintf(e.stdout, "%s: ok: %d port overrides, %d site rows\n", path, len(site.Ports), len(site.Services))
	for _, p := range site.Ports {
		fmt.Fprintf(e.stdout, "  %s -> %d\n", p.Key, p.Port)
	}
	for _, r := range site.Services {
		fmt.Fprintf(e.stdout, "  + %s/%s %s\n", r.Name, r.Proto, r.PortString())
	}
	return exitOK
}

// catalogRow is a row as `portwatch catalog --format json|yaml` prints it.
type catalogRow struct {
	ID               uint16   `json:"id" yaml:"id"`
	Name             string   `json:"name" yaml:"name"`
	Proto            string   `json:"proto" yaml:"proto"`
	Port             string   `json:"port" yaml:"port"`
	Roles            []string `json:"roles" yaml:"roles"`
	Need             string   `json:"need" yaml:"need"`
	When             []string `json:"when,omitempty" yaml:"when,omitempty"`
	Status           string   `json:"status" yaml:"status"`
	TableNeed        string   `json:"table_need" yaml:"table_need"`
	PrivilegedSource bool     `json:"privileged_source" yaml:"privileged_source"`
	OnWire           bool     `json:"on_wire" yaml:"on_wire"`
	CarriedBy        string   `json:"carried_by,omitempty" yaml:"carried_by,omitempty"`
	Pattern          string   `json:"pattern" yaml:"pattern"`
	SiteKey          string   `json:"site_key,omitempty" yaml:"site_key,omitempty"`
	RPCProgram       uint32   `json:"rpc_program,omitempty" yaml:"rpc_program,omitempty"`
	Source           string   `json:"source" yaml:"source"`
	Description      string   `json:"description" yaml:"description"`
}

type catalogDoc struct {
	Profiles []string     `json:"profiles" yaml:"profiles"`
	Services []catalogRow `json:"services" yaml:"services"`
}

func catalogDocument(cat *catalog.Catalog) catalogDoc {
	doc := catalogDoc{Profiles: cat.ActiveProfiles()}
	for _, e := range cat.Entries() {
		roles := make([]string, len(e.Roles))
		for i, r := range e.Roles {
			roles[i] = string(r)
		}
		doc.Services = append(doc.Services, catalogRow{
			ID: uint16(e.ID), Name: e.Name, Proto: e.Proto.String(), Port: e.PortString(), Roles: roles,
			Need: string(e.Need), When: e.When, Status: string(cat.Status(e)), TableNeed: e.TableNeed,
			PrivilegedSource: e.PrivilegedSource, OnWire: e.OnWire, CarriedBy: e.CarriedBy,
			Pattern: string(e.Pattern), SiteKey: e.SiteKey, RPCProgram: e.RPCProgram,
			Source: e.Source, Description: e.Description,
		})
	}
	return doc
}

func writeCatalogTable(w io.Writer, cat *catalog.Catalog) {
	fmt.Fprintf(w, "Profiles: %s\n\n", strings.Join(cat.ActiveProfiles(), ", "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSERVICE\tPROTO\tPORT\tROLES\tSTATUS\tWIRE\tRANGE\tCARRIED BY\tDESCRIPTION")
	for _, e := range cat.Entries() {
		roles := make([]string, len(e.Roles))
		for i, r := range e.Roles {
			roles[i] = string(r)
		}
		wire := string(e.Pattern)
		if !e.OnWire {
			wire = "never"
		}
		rng := "-"
		if e.PrivilegedSource {
			rng = "1-1023"
		}
		carried := "-"
		if e.CarriedBy != "" {
			carried = e.CarriedBy
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Name, e.Proto, e.PortString(),
			strings.Join(roles, ","), cat.Status(e), wire, rng, carried, e.Description)
	}
	tw.Flush()
}
