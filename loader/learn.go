package loader

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/cilium/ebpf/perf"

	"portwatch/bpf"
)

// learnBufferPages is the size of each CPU's perf ring in pages: 64 KiB
// with 4 KiB pages, room for 40 full-size rpcbind packets per CPU between
// two reads. rpcbind traffic comes in handfuls, when clients mount.
const learnBufferPages = 16

var learnMetaSize = int(unsafe.Sizeof(bpf.PortwatchLearnMeta{}))

// LearnEvents delivers copies of the rpcbind (portmapper) packets the
// programs see: each is the frame's bytes from its Ethernet header on, cut
// at 1500 bytes. The learner reads mountd's port from them and calls
// SetCatalog. The channel closes when ctx is done or the Loader is closed.
// Samples the kernel could not queue because the ring was full are counted
// (LearnLost) and logged. LearnEvents may be called once per Loader.
func (l *Loader) LearnEvents(ctx context.Context) (<-chan []byte, error) {
	l.learnMu.Lock()
	defer l.learnMu.Unlock()
	if l.learnReader != nil {
		return nil, errors.New("LearnEvents: already reading the learn events")
	}
	rd, err := perf.NewReader(l.objs.LearnEvents, learnBufferPages*os.Getpagesize())
	if err != nil {
		return nil, privilegeError("opening the rpcbind event buffer (perf)", err)
	}
	l.learnReader = rd

	out := make(chan []byte, 64)
	stop := context.AfterFunc(ctx, func() { _ = rd.Close() })
	go func() {
		defer close(out)
		defer stop()
		for {
			rec, err := rd.Read()
			if err != nil {
				if !errors.Is(err, perf.ErrClosed) {
					l.log.Error("reading rpcbind events stopped; mountd's port will not be learned", "error", err)
				}
				return
			}
			if rec.LostSamples > 0 {
				total := l.learnLost.Add(rec.LostSamples)
				l.log.Warn("the rpcbind event buffer overflowed; learning waits for the next rpcbind exchange",
					"cpu", rec.CPU, "lost", rec.LostSamples, "lost_total", total)
				continue
			}
			frame, err := learnFrame(rec.RawSample)
			if err != nil {
				l.log.Warn("dropping a malformed rpcbind event", "cpu", rec.CPU, "error", err)
				continue
			}
			select {
			case out <- frame:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// LearnLost counts the rpcbind events lost because a perf ring was full.
func (l *Loader) LearnLost() uint64 { return l.learnLost.Load() }

// learnFrame takes the frame out of a sample: a struct learn_meta, then
// frame_len bytes, then the padding perf adds to reach 8-byte alignment.
func learnFrame(sample []byte) ([]byte, error) {
	if len(sample) < learnMetaSize {
		return nil, fmt.Errorf("sample of %d bytes is shorter than its %d-byte header", len(sample), learnMetaSize)
	}
	n := int(binary.NativeEndian.Uint32(sample[0:4]))
	body := sample[learnMetaSize:]
	if n > len(body) {
		return nil, fmt.Errorf("sample says %d frame bytes but carries %d", n, len(body))
	}
	return append([]byte(nil), body[:n]...), nil
}
