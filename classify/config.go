package classify

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"portwatch/catalog"
)

// Defaults of the verdict thresholds (docs/events.md, "Verdicts and reasons").
const (
	DefaultWindow = 10 * time.Second
	// MinWindow is the shortest --window: a live observer drains its
	// tables (up to tens of milliseconds) and judges every counter each
	// window, and a verdict needs retries seconds apart anyway.
	MinWindow          = 100 * time.Millisecond
	DefaultMinAttempts = 3
	DefaultMinSpan     = 3 * time.Second
	// DefaultAffectedCap is how many blocked (client, server) pairs the
	// summary lists per service before it only counts the rest.
	DefaultAffectedCap = 10
)

// Config is what a Classifier judges against. Zero numeric fields take the
// defaults above; negative ones are an error.
type Config struct {
	Catalog *catalog.Catalog
	// Window is the period at which the caller takes a snapshot and calls
	// Update. The classifier keeps no clock of its own: it reasons on the
	// snapshots' times, so a capture replayed faster than real time gives
	// the same verdicts as the live traffic did.
	Window time.Duration
	// MinAttempts and MinSpan make silence a verdict: at least MinAttempts
	// unanswered attempts whose first and last are at least MinSpan apart.
	MinAttempts int
	MinSpan     time.Duration
	// MgmtNets limits which servers count, for blocked and unexpected
	// verdicts alike; empty means every server. A DHCP exchange has no
	// server and is always in scope.
	MgmtNets []netip.Prefix
	// Observer is copied into every event and the summary.
	Observer Observer
	// AffectedCap bounds the (client, server) pairs listed per blocked
	// service in the summary.
	AffectedCap int
}

// withDefaults checks c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.Catalog == nil {
		return c, errors.New("classify: no catalog (load one with catalog.Load)")
	}
	var errs []error
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("window %s is negative", c.Window))
	}
	if c.MinAttempts < 0 {
		errs = append(errs, fmt.Errorf("min attempts %d is negative", c.MinAttempts))
	}
	if c.MinSpan < 0 {
		errs = append(errs, fmt.Errorf("min span %s is negative", c.MinSpan))
	}
	if c.AffectedCap < 0 {
		errs = append(errs, fmt.Errorf("affected cap %d is negative", c.AffectedCap))
	}
	for _, p := range c.MgmtNets {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("management network %v is not a valid prefix", p))
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("classify: %w", errors.Join(errs...))
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MinAttempts == 0 {
		c.MinAttempts = DefaultMinAttempts
	}
	if c.MinSpan == 0 {
		c.MinSpan = DefaultMinSpan
	}
	if c.AffectedCap == 0 {
		c.AffectedCap = DefaultAffectedCap
	}
	nets := make([]netip.Prefix, len(c.MgmtNets))
	for i, p := range c.MgmtNets {
		nets[i] = p.Masked()
	}
	c.MgmtNets = nets
	return c, nil
}

// Flags are the command-line settings of the classifier.
type Flags struct {
	Window      time.Duration
	MinAttempts int
	MinSpan     time.Duration
	MgmtNets    []netip.Prefix
}

// Register adds --window, --min-attempts, --min-span and --mgmt-net to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.DurationVar(&f.Window, "window", DefaultWindow,
		"counting window: portwatch compares the counters at every window boundary and reports only changes of state")
	fs.IntVar(&f.MinAttempts, "min-attempts", DefaultMinAttempts,
		"call a silent service blocked after this many unanswered attempts from one client (SYN retransmits count as one attempt)")
	fs.DurationVar(&f.MinSpan, "min-span", DefaultMinSpan,
		"call a silent service blocked only when the first and the last of those unanswered attempts are at least this far apart, so that a burst of parallel requests is not taken for retries")
	fs.Var((*prefixList)(&f.MgmtNets), "mgmt-net",
		"management network `CIDR` (repeatable, or comma-separated): only servers inside it count for blocked and unexpected verdicts (default: every server)")
}

// Validate reports settings that cannot work, naming the flag.
func (f *Flags) Validate() error {
	var errs []error
	switch {
	case f.Window <= 0:
		errs = append(errs, fmt.Errorf("--window %s: must be positive (the default is %s)", f.Window, DefaultWindow))
	case f.Window < MinWindow:
		errs = append(errs, fmt.Errorf("--window %s: must be at least %s: every window drains and judges every counter (the default is %s)", f.Window, MinWindow, DefaultWindow))
	}
	if f.MinAttempts < 1 {
		errs = append(errs, fmt.Errorf("--min-attempts %d: must be at least 1 (the default is %d)", f.MinAttempts, DefaultMinAttempts))
	}
	if f.MinSpan <= 0 {
		errs = append(errs, fmt.Errorf("--min-span %s: must be positive, or parallel requests would count as retries (the default is %s)", f.MinSpan, DefaultMinSpan))
	}
	return errors.Join(errs...)
}

// Config validates the flags and returns the classifier configuration.
func (f *Flags) Config(cat *catalog.Catalog, obs Observer) (Config, error) {
	if err := f.Validate(); err != nil {
		return Config{}, err
	}
	return Config{
		Catalog:     cat,
		Window:      f.Window,
		MinAttempts: f.MinAttempts,
		MinSpan:     f.MinSpan,
		MgmtNets:    append([]netip.Prefix(nil), f.MgmtNets...),
		Observer:    obs,
	}, nil
}

// prefixList is the pflag.Value of --mgmt-net: each use appends.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	parts := make([]string, len(*l))
	for i, p := range *l {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func (l *prefixList) Type() string { return "CIDR" }

func (l *prefixList) Set(value string) error {
	for _, s := range strings.Split(value, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			return err
		}
		*l = append(*l, p)
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.Prefix{}, fmt.Errorf("%s has no prefix length: write %s/%d for this one host, or the network's length (such as /16)",
				s, a, a.BitLen())
		}
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (want one such as 10.0.0.0/16 or fd00::/64)", s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (want one such as 10.0.0.0/16 or fd00::/64)", s)
	}
	return p.Masked(), nil
}
