package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"

	"portwatch/catalog"
)

// XDPMode is how the ingress program attaches to an interface.
type XDPMode string

// The XDP attach modes.
const (
	// XDPAuto tries native mode and falls back to generic mode when the
	// driver has no native XDP, saying so.
	XDPAuto XDPMode = "auto"
	// XDPNative runs in the driver, before the kernel builds a socket
	// buffer: the cheapest hook. Fails when the driver lacks XDP support.
	XDPNative XDPMode = "native"
	// XDPGeneric runs after the socket buffer is built; every driver has
	// it, at a higher cost per packet.
	XDPGeneric XDPMode = "generic"
)

var xdpModes = []XDPMode{XDPAuto, XDPNative, XDPGeneric}

// String implements pflag.Value.
func (m *XDPMode) String() string { return string(*m) }

// Set implements pflag.Value.
func (m *XDPMode) Set(s string) error {
	for _, v := range xdpModes {
		if strings.EqualFold(s, string(v)) {
			*m = v
			return nil
		}
	}
	// xdp-loader and iproute2 call generic mode "skb" and native "drv".
	switch strings.ToLower(s) {
	case "skb":
		*m = XDPGeneric
		return nil
	case "drv", "driver":
		*m = XDPNative
		return nil
	}
	return fmt.Errorf("unknown XDP mode %q (want auto, native or generic)", s)
}

// Type implements pflag.Value.
func (m *XDPMode) Type() string { return "mode" }

// EgressAttach is how the egress program attaches.
type EgressAttach string

// The egress attach kinds.
const (
	// EgressAuto uses TCX where the kernel has it (6.6+) and a clsact
	// qdisc with a direct-action filter otherwise.
	EgressAuto EgressAttach = "auto"
	// EgressTCX attaches a TCX bpf_link, which the kernel removes when the
	// process exits.
	EgressTCX EgressAttach = "tcx"
	// EgressClsact adds a direct-action bpf filter to the clsact qdisc's
	// egress hook. It outlives the process (see the package comment).
	EgressClsact EgressAttach = "clsact"
)

var egressAttaches = []EgressAttach{EgressAuto, EgressTCX, EgressClsact}

// String implements pflag.Value.
func (e *EgressAttach) String() string { return string(*e) }

// Set implements pflag.Value.
func (e *EgressAttach) Set(s string) error {
	for _, v := range egressAttaches {
		if strings.EqualFold(s, string(v)) {
			*e = v
			return nil
		}
	}
	return fmt.Errorf("unknown egress attach kind %q (want auto, tcx or clsact)", s)
}

// Type implements pflag.Value.
func (e *EgressAttach) Type() string { return "kind" }

// Map sizes, the defaults of the C program (bpf/portwatch.c).
const (
	DefaultMaxExchanges  = 65536
	DefaultMaxEphemeral  = 16384
	DefaultMaxUnexpected = 4096
	DefaultMaxFlows      = 16384

	// MinMapEntries keeps a table many chunks and index buckets wide, so
	// that a few busy hosts cannot crowd everything else out.
	MinMapEntries = 256
	// MaxMapEntries bounds a table at 16 Mi entries: the exchange table is
	// then 4.5 GiB of kernel memory, more than any cluster needs.
	MaxMapEntries = 1 << 24
)

// MapSizes are the capacities of the kernel's tables: each holds that many
// entries (rounded up to whole chunks of its slots). Once a table is full, a
// new entry takes the place of one that no packet used for longest (see
// bpf/portwatch.h). The classifier treats a vanished exchange as evicted, so
// a table that is too small loses evidence, not correctness.
type MapSizes struct {
	Exchanges  int // (service, client, server) exchanges
	Ephemeral  int // TFTP-style requests waiting for an answer from a new server port
	Unexpected int // answered ports in no catalog row
	Flows      int // UDP datagrams on no catalog port, waiting for an answer
}

// DefaultMapSizes are the C program's own sizes.
func DefaultMapSizes() MapSizes {
	return MapSizes{
		Exchanges:  DefaultMaxExchanges,
		Ephemeral:  DefaultMaxEphemeral,
		Unexpected: DefaultMaxUnexpected,
		Flows:      DefaultMaxFlows,
	}
}

// Validate checks every size against MinMapEntries and MaxMapEntries.
func (s MapSizes) Validate() error {
	var errs []error
	for _, f := range []struct {
		flag string
		n    int
	}{
		{"--max-exchanges", s.Exchanges},
		{"--max-ephemeral", s.Ephemeral},
		{"--max-unexpected", s.Unexpected},
		{"--max-flows", s.Flows},
	} {
		if f.n < MinMapEntries || f.n > MaxMapEntries {
			errs = append(errs, fmt.Errorf("%s %d: want %d to %d entries", f.flag, f.n, MinMapEntries, MaxMapEntries))
		}
	}
	return errors.Join(errs...)
}

// Config says what the kernel backend loads and where it attaches.
type Config struct {
	// Interfaces to watch: XDP on their ingress, TC on their egress.
	Interfaces []string
	// XDPMode is the ingress attach mode; empty means XDPAuto.
	XDPMode XDPMode
	// Egress is the egress attach kind; empty means EgressAuto.
	Egress EgressAttach
	// Sizes are the tables' capacities; zero fields take the defaults.
	Sizes MapSizes
	// Catalog fills the port map. Required.
	Catalog *catalog.Catalog
	// Log receives what the loader decided (attach modes, fallbacks, lost
	// learn events); nil means slog.Default().
	Log *slog.Logger

	// tableSeed, when not zero, replaces the tables' random hash seed, so
	// that a test knows which keys share an index bucket.
	tableSeed uint64
}

// withDefaults fills the empty fields.
func (c Config) withDefaults() Config {
	if c.XDPMode == "" {
		c.XDPMode = XDPAuto
	}
	if c.Egress == "" {
		c.Egress = EgressAuto
	}
	// The names the flags accept ("skb", "Native"), in their canonical
	// form; a name they refuse stays, for validate to report.
	var mode XDPMode
	if mode.Set(string(c.XDPMode)) == nil {
		c.XDPMode = mode
	}
	var egress EgressAttach
	if egress.Set(string(c.Egress)) == nil {
		c.Egress = egress
	}
	def := DefaultMapSizes()
	if c.Sizes.Exchanges == 0 {
		c.Sizes.Exchanges = def.Exchanges
	}
	if c.Sizes.Ephemeral == 0 {
		c.Sizes.Ephemeral = def.Ephemeral
	}
	if c.Sizes.Unexpected == 0 {
		c.Sizes.Unexpected = def.Unexpected
	}
	if c.Sizes.Flows == 0 {
		c.Sizes.Flows = def.Flows
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// validate checks a config after withDefaults. Interfaces are checked by
// Open, which needs them; Load runs frames without attaching.
func (c Config) validate() error {
	var errs []error
	if c.Catalog == nil {
		errs = append(errs, errors.New("no catalog: the kernel backend needs one to fill its port map"))
	}
	var mode XDPMode
	if err := mode.Set(string(c.XDPMode)); err != nil {
		errs = append(errs, fmt.Errorf("--xdp-mode: %w", err))
	}
	var egress EgressAttach
	if err := egress.Set(string(c.Egress)); err != nil {
		errs = append(errs, fmt.Errorf("--egress-attach: %w", err))
	}
	if err := c.Sizes.Validate(); err != nil {
		errs = append(errs, err)
	}
	seen := map[string]bool{}
	for _, name := range c.Interfaces {
		if name == "" {
			errs = append(errs, errors.New("an empty interface name"))
		} else if seen[name] {
			errs = append(errs, fmt.Errorf("interface %s is given twice", name))
		}
		seen[name] = true
	}
	return errors.Join(errs...)
}

// Flags are the kernel backend's command-line flags. The interfaces are not
// among them: the command owns --interface, which the capture backend shares.
type Flags struct {
	XDPMode XDPMode
	Egress  EgressAttach
	Sizes   MapSizes
}

// Register adds the flags to fs, with the defaults of the C program.
func (f *Flags) Register(fs *pflag.FlagSet) {
	f.XDPMode = XDPAuto
	f.Egress = EgressAuto
	f.Sizes = DefaultMapSizes()
	fs.Var(&f.XDPMode, "xdp-mode",
		"how the ingress program attaches: native (in the driver, cheapest), generic (after the kernel builds "+
			"the socket buffer; any driver), or auto (native, else generic; the mode each interface got is logged "+
			"and exported)")
	fs.IntVar(&f.Sizes.Exchanges, "max-exchanges", DefaultMaxExchanges,
		"kernel table of tracked (service, client, server) exchanges; when full, a new one takes the place of "+
			"one that no packet used for long. About 150 bytes each, one table shared by all CPUs")
	fs.IntVar(&f.Sizes.Ephemeral, "max-ephemeral", DefaultMaxEphemeral,
		"kernel table of TFTP requests waiting for the answer from the server's new port; size it for the nodes "+
			"that boot at once")
	fs.IntVar(&f.Sizes.Unexpected, "max-unexpected", DefaultMaxUnexpected,
		"kernel table of answered ports that are in no catalog row")
	fs.IntVar(&f.Sizes.Flows, "max-flows", DefaultMaxFlows,
		"kernel table of UDP datagrams to ports in no catalog row, kept to see whether the port answers")
	fs.Var(&f.Egress, "egress-attach",
		"how the egress program attaches: tcx (a bpf_link, kernel 6.6+), clsact (a tc filter that outlives a "+
			"killed process; removed at the next start), or auto (tcx, else clsact)")
	// Only tests and kernel debugging need to pick the egress hook.
	_ = fs.MarkHidden("egress-attach")
}

// Config builds the loader's configuration from the flags.
func (f *Flags) Config(interfaces []string, cat *catalog.Catalog, log *slog.Logger) (Config, error) {
	// A zero from the command line is a mistake, not a request for the
	// default that withDefaults would quietly give.
	if err := f.Sizes.Validate(); err != nil {
		return Config{}, err
	}
	cfg := Config{
		Interfaces: interfaces,
		XDPMode:    f.XDPMode,
		Egress:     f.Egress,
		Sizes:      f.Sizes,
		Catalog:    cat,
		Log:        log,
	}.withDefaults()
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
