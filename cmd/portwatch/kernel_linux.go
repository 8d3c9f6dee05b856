package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/spf13/pflag"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/export"
	"portwatch/loader"
)

// observeSupported: live capture needs Linux (XDP or AF_PACKET).
const observeSupported = true

// kernelFlags are the kernel backend's flags.
type kernelFlags struct{ loader.Flags }

func (k *kernelFlags) register(fs *pflag.FlagSet) { k.Flags.Register(fs) }

// kernelBackend is the XDP + TC backend, and the rpcbind events it hands up.
type kernelBackend struct {
	*loader.Loader
	cfg loader.Config

	mu                    sync.Mutex
	exchanges, unexpected int // entries in the last snapshot
}

func openKernel(ctx context.Context, f observeFlags, cat *catalog.Catalog,
	learn func(src, dst netip.Addr, sport, dport uint16, payload []byte), log *slog.Logger) (*kernelBackend, error) {
	cfg, err := f.kernel.Config(f.interfaces, cat, log)
	if err != nil {
		return nil, &usageError{err}
	}
	l, err := loader.Open(cfg)
	if err != nil {
		return nil, err
	}
	events, err := l.LearnEvents(ctx)
	if err != nil {
		// Without the events only mountd's port goes unlearned.
		log.Warn("mountd's port will not be learned", "error", err)
	} else {
		go func() {
			for frame := range events {
				if d, ok := bpf.UDPDatagram(frame); ok {
					learn(d.Src, d.Dst, d.Sport, d.Dport, d.Payload)
				}
			}
		}()
	}
	return &kernelBackend{Loader: l, cfg: cfg}, nil
}

// kernelFallbackAllowed says whether --backend auto may try the capture
// backend after the kernel one failed: not for mistakes of the command line
// or of the interface, which the capture backend would repeat.
func kernelFallbackAllowed(err error) bool {
	var usage *usageError
	return !errors.As(err, &usage) && !strings.Contains(err.Error(), "no such interface")
}

func (k *kernelBackend) Snapshot() (bpf.Snapshot, error) {
	s, err := k.Loader.Snapshot()
	if err == nil {
		k.mu.Lock()
		k.exchanges, k.unexpected = len(s.Exchanges), len(s.Unexpected)
		k.mu.Unlock()
	}
	return s, err
}

// mode is the XDP mode every interface got, or the modes if they differ.
func (k *kernelBackend) mode() string {
	var modes []string
	for _, a := range k.Loader.Attachments() {
		if m := string(a.XDPMode); !strings.Contains(strings.Join(modes, ","), m) {
			modes = append(modes, m)
		}
	}
	return strings.Join(modes, ",")
}

func (k *kernelBackend) Attachments() []export.Attachment {
	var out []export.Attachment
	for _, a := range k.Loader.Attachments() {
		out = append(out, export.Attachment{Interface: a.Interface, Mode: string(a.XDPMode), Egress: string(a.Egress)})
	}
	return out
}

func (k *kernelBackend) MapStats() []export.MapStat {
	k.mu.Lock()
	defer k.mu.Unlock()
	return []export.MapStat{
		{Name: "exchanges", Entries: k.exchanges, EntriesKnown: true, Capacity: k.cfg.Sizes.Exchanges},
		{Name: "unexpected", Entries: k.unexpected, EntriesKnown: true, Capacity: k.cfg.Sizes.Unexpected},
		{Name: "ephemeral", Capacity: k.cfg.Sizes.Ephemeral},
		{Name: "udp_flows", Capacity: k.cfg.Sizes.Flows},
	}
}
