package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"portwatch/bpf"
	"portwatch/catalog"
)

// Attachment says where and how the programs watch one interface.
type Attachment struct {
	Interface string
	Ifindex   int
	// XDPMode is the mode the ingress program got: XDPNative or XDPGeneric,
	// never XDPAuto.
	XDPMode XDPMode
	// Egress is how the egress program is attached: EgressTCX or
	// EgressClsact, never EgressAuto.
	Egress EgressAttach
}

// Loader holds the loaded programs and maps and, after Open, their
// attachments. Its methods are safe for concurrent use.
type Loader struct {
	cfg  Config
	log  *slog.Logger
	objs bpf.PortwatchObjects

	// nl is a netlink socket in the network namespace Open ran in, so
	// that Close removes clsact filters there even when called from
	// another namespace.
	nl          *netlink.Handle
	attachments []Attachment
	links       []link.Link
	// xdpLinks are the ingress links by interface, for Detached.
	xdpLinks map[string]link.Link
	filters  []*clsactFilter

	portsMu sync.Mutex
	// ports mirrors the non-empty entries of the port map, so that
	// SetCatalog knows which entries to clear.
	ports map[uint32]bpf.PortwatchPortEntry

	snapMu sync.Mutex
	snap   snapshotBuffers
	// The tables that snapshots read, mapped into memory.
	exchangeTable   *slotTable[bpf.PortwatchExchangeSlot]
	unexpectedTable *slotTable[bpf.PortwatchUnexpectedSlot]
	// ticks places the kernel's tick counter, the program's time stamps,
	// on the monotonic clock; measured by the first snapshot (it takes a
	// few ticks, which loading need not wait for).
	ticks tickScale
	// wallOffset is the wall clock less the monotonic one that stamps and
	// snapshot times are converted with; steppedTo the last stepped offset
	// warned of. See tickClock.
	wallOffset, steppedTo int64
	haveOffset            bool
	// noBatch makes Snapshot read the per-CPU counters one entry at a
	// time, as on kernels without batch lookups; tests set it to check the
	// fallback.
	noBatch bool

	learnMu     sync.Mutex
	learnReader *perf.Reader
	learnLost   atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// Load loads the programs and maps into the kernel and fills the port map
// from cfg.Catalog, without attaching anything: for running frames through
// the programs (RunXDP, RunTC) and for reading their maps. Open loads and
// attaches.
func Load(cfg Config) (*Loader, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// to the memory cgroup, and this is a no-op there. Without the right
	// to raise the limit, loading fails below with the error that matters.
	if err := rlimit.RemoveMemlock(); err != nil {
		cfg.Log.Debug("could not lift RLIMIT_MEMLOCK", "error", err)
	}
	spec, err := bpf.LoadPortwatch()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("counting CPUs: %w", err)
	}
	if err := sizeMaps(spec, cfg.Sizes, cpus, cfg.tableSeed); err != nil {
		return nil, err
	}
	l := &Loader{cfg: cfg, log: cfg.Log, ports: map[uint32]bpf.PortwatchPortEntry{}}
	if err := spec.LoadAndAssign(&l.objs, nil); err != nil {
		return nil, loadError(err)
	}
	if l.exchangeTable, err = mapTable[bpf.PortwatchExchangeSlot](l.objs.Exchanges); err == nil {
		l.unexpectedTable, err = mapTable[bpf.PortwatchUnexpectedSlot](l.objs.Unexpected)
	}
	if err != nil {
		_ = l.exchangeTable.close()
		_ = l.objs.Close()
		return nil, err
	}
	if err := l.SetCatalog(cfg.Catalog); err != nil {
		_ = l.exchangeTable.close()
		_ = l.unexpectedTable.close()
		_ = l.objs.Close()
		return nil, err
	}
	return l, nil
}

// Open loads the programs, fills the port map and attaches the programs to
// every interface of cfg: XDP on ingress, TC on egress. It returns once
// every attachment is in place, so the caller may announce readiness; on
// any error nothing stays attached.
func Open(cfg Config) (*Loader, error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("no interface to watch: name one or more with --interface (see `ip link`)")
	}
	l, err := Load(cfg)
	if err != nil {
		return nil, err
	}
	if err := l.attachAll(); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Loader) attachAll() error {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return privilegeError("opening a netlink socket", err)
	}
	l.nl = nl
	for _, name := range l.cfg.Interfaces {
		a, err := l.attach(name)
		if err != nil {
			return err
		}
		l.attachments = append(l.attachments, a)
		l.log.Info("watching interface", "interface", a.Interface, "ifindex", a.Ifindex,
			"xdp_mode", string(a.XDPMode), "egress", string(a.Egress))
	}
	return nil
}

// Attachments lists where the programs are attached, in the order of
// Config.Interfaces; empty for a Loader from Load.
func (l *Loader) Attachments() []Attachment {
	return append([]Attachment(nil), l.attachments...)
}

// Detached returns the interfaces whose ingress program is no longer
// attached: the interface was deleted (a bond rebuilt, a NIC replugged),
// which drops its links, and a new one of the same name is another
// interface. Nothing is seen there any more until portwatch is restarted.
func (l *Loader) Detached() ([]string, error) {
	var gone []string
	for _, a := range l.attachments {
		lk := l.xdpLinks[a.Interface]
		if lk == nil {
			continue
		}
		info, err := lk.Info()
		if err != nil {
			return nil, fmt.Errorf("reading the XDP link of %s: %w", a.Interface, err)
		}
		if x := info.XDP(); x != nil && x.Ifindex == 0 {
			gone = append(gone, a.Interface)
		}
	}
	return gone, nil
}

// RunXDP runs the ingress program once on frame (BPF_PROG_TEST_RUN) and
// returns its verdict. The maps record the frame as if it had arrived.
func (l *Loader) RunXDP(frame []byte) (uint32, error) {
	return l.objs.PortwatchXdp.Run(&ebpf.RunOptions{Data: frame, Repeat: 1})
}

// RunTC runs the egress program once on frame and returns its verdict.
func (l *Loader) RunTC(frame []byte) (uint32, error) {
	return l.objs.PortwatchTc.Run(&ebpf.RunOptions{Data: frame, Repeat: 1})
}

// Close detaches the programs (closes the bpf_links, removes any clsact
// filter) and releases the maps. It is safe to call more than once.
func (l *Loader) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		l.learnMu.Lock()
		if l.learnReader != nil {
			errs = append(errs, l.learnReader.Close())
		}
		l.learnMu.Unlock()
		for _, lk := range l.links {
			if err := lk.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detaching: %w", err))
			}
		}
		for _, f := range l.filters {
			errs = append(errs, f.remove(l.nl))
		}
		if l.nl != nil {
			l.nl.Close()
		}
		l.snapMu.Lock()
		errs = append(errs, l.exchangeTable.close(), l.unexpectedTable.close())
		l.snapMu.Unlock()
		errs = append(errs, l.objs.Close())
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// SetCatalog rewrites the port map for a new catalog (a learned mountd port,
// a reloaded site file). Entries are written before stale ones are cleared,
// so a port that stays in the catalog never reads as empty, and a packet
// sees either the old or the new entry of a port, never none.
func (l *Loader) SetCatalog(cat *catalog.Catalog) error {
	if cat == nil {
		return errors.New("SetCatalog: no catalog")
	}
	next := map[uint32]bpf.PortwatchPortEntry{}
	for _, e := range bpf.PortMap(cat) {
		if e.Value.Service > uint16(catalog.MaxServiceID) || e.Value.PrivService > uint16(catalog.MaxServiceID) {
			return fmt.Errorf("catalog row id %d/%d is above %d, the size of the kernel's service table",
				e.Value.Service, e.Value.PrivService, catalog.MaxServiceID)
		}
		next[e.Index] = e.Value
	}

	l.portsMu.Lock()
	defer l.portsMu.Unlock()
	var writeKeys, clearKeys []uint32
	var writeVals []bpf.PortwatchPortEntry
	for idx, v := range next {
		if old, ok := l.ports[idx]; !ok || old != v {
			writeKeys = append(writeKeys, idx)
			writeVals = append(writeVals, v)
		}
	}
	for idx := range l.ports {
		if _, ok := next[idx]; !ok {
			clearKeys = append(clearKeys, idx)
		}
	}
	// A failed write may have stored some of writeKeys: note them as
	// holding an empty entry, which no row has, so that the next catalog
	// rewrites or clears each of them.
	forgetWritten := func() {
		if l.ports == nil {
			l.ports = map[uint32]bpf.PortwatchPortEntry{}
		}
		for _, k := range writeKeys {
			l.ports[k] = bpf.PortwatchPortEntry{}
		}
	}
	if err := writeArray(l.objs.Ports, writeKeys, writeVals); err != nil {
		forgetWritten()
		return fmt.Errorf("writing the port map: %w", err)
	}
	// An array has no deletion: an empty entry (service 0) is "no row".
	if err := writeArray(l.objs.Ports, clearKeys, make([]bpf.PortwatchPortEntry, len(clearKeys))); err != nil {
		forgetWritten()
		return fmt.Errorf("clearing the port map: %w", err)
	}
	l.ports = next
	return nil
}

// writeArray writes entries with one batch update, or one by one on kernels
// without batch operations (before 5.6).
func writeArray[V any](m *ebpf.Map, keys []uint32, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, vals, nil)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i, k := range keys {
		if err := m.Update(k, vals[i], ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}
