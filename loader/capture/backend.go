package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
)

// Backend is the live capture backend: AF_PACKET sockets on one or more
// interfaces feeding one Go twin, so that it gives the kernel backend's
// snapshots on hosts where XDP cannot run. Its methods are safe for
// concurrent use.
type Backend struct {
	mu      sync.Mutex
	twin    *bpf.Twin
	sources []LiveSource
	names   []string
	wg      sync.WaitGroup
	// readErr is the first error a reader stopped on.
	readErr error
	// fed counts, per source, the packets the reader has fed to the twin.
	fed []uint64
	// blockTimeout is the sources' LiveOptions.BlockTimeout (see Flush).
	blockTimeout time.Duration
	// now reads the wall clock and elapsed a monotonic one (time since an
	// arbitrary start); tests replace both. origin and originElapsed are
	// their readings at the start: the time line the backend's times are
	// on (see lineShift).
	now           func() time.Time
	elapsed       func() time.Duration
	origin        time.Time
	originElapsed time.Duration
	// shift is what to add to a packet's kernel time stamp (wall clock)
	// to put it on the time line; shiftAge counts packets since it was
	// computed. Guarded by mu.
	shift    time.Duration
	shiftAge int

	learn func(src, dst netip.Addr, sport, dport uint16, payload []byte)
	// pending holds the datagrams the twin handed to learn while a reader
	// held mu; that reader delivers them once it has let go of mu.
	pending []learned
}

// learned is an rpcbind datagram on its way to BackendOptions.Learn.
type learned struct {
	src, dst     netip.Addr
	sport, dport uint16
	payload      []byte
}

// BackendOptions configure a live capture backend.
type BackendOptions struct {
	Catalog *catalog.Catalog
	Twin    bpf.TwinConfig
	// Learn receives rpcbind datagrams (for mountd's port), from the
	// goroutine that read them and without the backend's lock held, so
	// that it may call the backend back: SetCatalog with a learned port.
	// With several interfaces it may run on several goroutines at once.
	Learn func(src, dst netip.Addr, sport, dport uint16, payload []byte)
	Live  LiveOptions
}

// StartBackend opens a capture on every interface and starts reading.
func StartBackend(interfaces []string, o BackendOptions) (*Backend, error) {
	if len(interfaces) == 0 {
		return nil, errors.New("capture backend: no interface (give one with -i)")
	}
	start := time.Now()
	b := &Backend{twin: bpf.NewTwin(o.Catalog, o.Twin), now: time.Now, elapsed: func() time.Duration { return time.Since(start) }}
	b.origin, b.originElapsed = b.now(), b.elapsed()
	if o.Learn != nil {
		b.learn = o.Learn
		// The twin calls this under mu (read feeds it with mu held).
		b.twin.OnLearn(func(src, dst netip.Addr, sport, dport uint16, payload []byte) {
			b.pending = append(b.pending, learned{src, dst, sport, dport, bytes.Clone(payload)})
		})
	}
	lo := o.Live.withDefaults()
	lo.Catalog = o.Catalog
	b.blockTimeout = lo.BlockTimeout
	for _, name := range interfaces {
		src, err := OpenLive(name, lo)
		if err != nil {
			for _, s := range b.sources {
				s.Close()
			}
			return nil, err
		}
		b.sources = append(b.sources, src)
		b.names = append(b.names, name)
	}
	b.fed = make([]uint64, len(b.sources))
	for i, src := range b.sources {
		b.wg.Add(1)
		go b.read(i, src)
	}
	return b, nil
}

func (b *Backend) read(i int, src LiveSource) {
	defer b.wg.Done()
	for {
		p, err := src.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				b.mu.Lock()
				if b.readErr == nil {
					b.readErr = err
				}
				b.mu.Unlock()
			}
			return
		}
		b.mu.Lock()
		if b.shiftAge%shiftEvery == 0 {
			b.shift = b.lineShift()
		}
		b.shiftAge++
		ts := p.Timestamp.Add(b.shift)
		if p.Network {
			b.twin.Network(p.EtherType, p.Data, p.WireLen, ts)
		} else {
			b.twin.Ethernet(p.Data, p.WireLen, ts)
		}
		b.fed[i]++
		learnt := b.pending
		b.pending = nil
		b.mu.Unlock()
		for _, d := range learnt {
			b.learn(d.src, d.dst, d.sport, d.dport, d.payload)
		}
	}
}

// shiftEvery is how many packets one lineShift serves: a clock step is
// rare, and noticing it a few packets late changes nothing.
const shiftEvery = 256

// lineNow is the time now on the backend's time line: its start's wall
// time plus the monotonic time since. A stepped wall clock does not move it.
func (b *Backend) lineNow() time.Time {
	return b.origin.Add(b.elapsed() - b.originElapsed)
}

// lineShift is what moves a kernel time stamp (wall clock) onto the time
// line: 0 until the wall clock is stepped, then the step, undone. Without
// it a clock stepped back made every later packet look older than the
// newest seen, its exchange unchanged, and shrank spans of attempts.
func (b *Backend) lineShift() time.Duration {
	// Round(0): wall readings alone, whatever monotonic one they carry.
	return b.lineNow().Round(0).Sub(b.now().Round(0))
}

// Snapshot returns the counters now, with the packets the kernel dropped
// before they reached the socket as Lost.
func (b *Backend) Snapshot() (bpf.Snapshot, error) {
	var dropped uint64
	for i, src := range b.sources {
		_, d, err := src.Stats()
		if err != nil {
			return bpf.Snapshot{}, fmt.Errorf("capture statistics of %s: %w", b.names[i], err)
		}
		dropped += d
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.readErr != nil {
		return bpf.Snapshot{}, fmt.Errorf("capture stopped: %w", b.readErr)
	}
	s := b.twin.Snapshot()
	s.Time = b.lineNow()
	s.Lost = dropped
	return s, nil
}

// Flush waits until every packet the kernel queued for the captures before
// the call has been fed to the twin, so that a last snapshot holds the
// traffic up to now, as the kernel backend's does. The kernel hands a ring
// block over when it is full or when its block timer finds it open for a
// whole period, so a packet may wait up to two block timeouts; without
// Flush, the packets of the last 100 ms before a stop would be missing.
// Flush gives up after that time and a margin, saying how many packets it
// did not see read.
func (b *Backend) Flush() error {
	queued := make([]uint64, len(b.sources))
	for i, src := range b.sources {
		received, dropped, err := src.Stats()
		if err != nil {
			return fmt.Errorf("capture statistics of %s: %w", b.names[i], err)
		}
		queued[i] = received - min(received, dropped)
	}
	wait := 2*b.blockTimeout + 250*time.Millisecond
	deadline := time.Now().Add(wait)
	for {
		b.mu.Lock()
		var unread uint64
		for i, q := range queued {
			unread += q - min(q, b.fed[i])
		}
		stopped := b.readErr != nil
		b.mu.Unlock()
		switch {
		case unread == 0 || stopped: // a stopped reader: Snapshot says why
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("capture: %d packets the kernel queued were not read within %v: the last counts lack them", unread, wait)
		}
		time.Sleep(time.Millisecond)
	}
}

// SetCatalog applies a new catalog to the twin and to every socket filter.
func (b *Backend) SetCatalog(cat *catalog.Catalog) error {
	var errs []error
	for i, src := range b.sources {
		if err := src.SetCatalog(cat); err != nil {
			errs = append(errs, fmt.Errorf("socket filter of %s: %w", b.names[i], err))
		}
	}
	b.mu.Lock()
	b.twin.SetCatalog(cat)
	b.mu.Unlock()
	return errors.Join(errs...)
}

// Interfaces are the interfaces captured on.
func (b *Backend) Interfaces() []string { return b.names }

// Close stops every capture and waits for the readers.
func (b *Backend) Close() error {
	var errs []error
	for _, src := range b.sources {
		errs = append(errs, src.Close())
	}
	b.wg.Wait()
	return errors.Join(errs...)
}
