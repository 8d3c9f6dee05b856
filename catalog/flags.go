package catalog

import (
	"strings"

	"github.com/spf13/pflag"
)

// Flags are the command-line options that choose the catalog: profiles and
// site overrides. Every command that judges traffic registers them.
type Flags struct {
	Profiles  []string
	SiteFile  string
	SiteTable string
	Ports     []string
}

// Register adds the catalog options to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.Profiles, "profile", nil,
		"`PROFILE`s that decide which xCAT ports are required, comma-separated or repeated: "+
			"linux, aix, p-linux, linux-statelite (statelite), ipmi (x86_64, p8), flex, rmc-monitoring (rmc), snmp-monitoring (snmp); "+
			"default linux,ipmi")
	fs.StringVar(&f.SiteFile, "site", "",
		"site override `FILE` (YAML): moved ports (xcatdport, xcatiport, xcatlport, httpport), fixed mountd ports, extra site rows; "+
			"check it with 'portwatch catalog check FILE'")
	fs.StringVar(&f.SiteTable, "site-table", "",
		"read moved ports from `FILE`, the output of xCAT's 'tabdump site'")
	fs.StringArrayVar(&f.Ports, "port", nil,
		"move a port: `KEY=PORT`, as in xcatdport=3011 (keys: xcatdport, xcatiport, xcatlport, httpport, mount-tcp, mount-udp); "+
			"repeatable, wins over --site and --site-table")
}

// Load builds the catalog the flags describe.
func (f *Flags) Load() (*Catalog, error) {
	return Load(f.Options())
}

// Options are the flags as load options.
func (f *Flags) Options() Options {
	var profiles []string
	for _, p := range f.Profiles {
		if strings.TrimSpace(p) != "" {
			profiles = append(profiles, p)
		}
	}
	return Options{Profiles: profiles, SiteFile: f.SiteFile, SiteTable: f.SiteTable, Ports: f.Ports}
}
