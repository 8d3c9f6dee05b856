package loader

import (
	"bytes"
	"testing"

	"github.com/cilium/ebpf"

	"portwatch/bpf"
)

// The report people read when sizing the tables: default sizes, for a small
// management node and a large one.
func TestMemoryReport(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMemoryReport(&buf, DefaultMapSizes(), 2, 128); err != nil {
		t.Fatal(err)
	}
	golden(t, "memory.golden", buf.Bytes())
}

func TestMemoryExchangeTableIsShared(t *testing.T) {
	small, err := EstimateMemory(DefaultMapSizes(), 2)
	if err != nil {
		t.Fatal(err)
	}
	large, err := EstimateMemory(DefaultMapSizes(), 128)
	if err != nil {
		t.Fatal(err)
	}
	byName := func(ms []MapMemory, name string) MapMemory {
		for _, m := range ms {
			if m.Name == name {
				return m
			}
		}
		t.Fatalf("no map %s", name)
		return MapMemory{}
	}
	for _, name := range []string{bpf.PortwatchMapExchanges, bpf.PortwatchMapEphemeral,
		bpf.PortwatchMapUnexpected, bpf.PortwatchMapUdpFlows, bpf.PortwatchMapPorts,
		bpf.PortwatchMapExchangesIndex, bpf.PortwatchMapEphemeralIndex,
		bpf.PortwatchMapUnexpectedIndex, bpf.PortwatchMapUdpFlowsIndex} {
		s, l := byName(small, name), byName(large, name)
		// A few locks and list heads per CPU, never an entry per CPU.
		if perCPU := (l.Bytes - s.Bytes) / 126; perCPU > 128 {
			t.Errorf("%s grows by %d bytes per CPU (%d at 2 CPUs, %d at 128)", name, perCPU, s.Bytes, l.Bytes)
		}
	}
	s, l := byName(small, bpf.PortwatchMapServiceStats), byName(large, bpf.PortwatchMapServiceStats)
	if want := uint64(126 * 1024 * s.ValueSize); l.Bytes-s.Bytes != want {
		t.Errorf("service_stats grows by %d bytes from 2 to 128 CPUs, want %d (a value per CPU per entry)",
			l.Bytes-s.Bytes, want)
	}
}

// The model against the kernel's own accounting (fdinfo memlock).
func TestMemoryMatchesKernel(t *testing.T) {
	for _, sizes := range []MapSizes{DefaultMapSizes(), {Exchanges: 100000, Ephemeral: 300, Unexpected: 5000, Flows: 1 << 20}} {
		l := loadForTest(t, Config{Sizes: sizes})
		maps, err := l.Memory()
		if err != nil {
			t.Fatal(err)
		}
		cpus, err := ebpf.PossibleCPU()
		if err != nil {
			t.Fatal(err)
		}
		measured := 0
		for _, m := range maps {
			if m.Memlock == 0 {
				continue
			}
			measured++
			model := m.KernelCounted(cpus)
			diff := int64(model) - int64(m.Memlock)
			// Other kernels' structs differ by some hundred bytes.
			if diff < -1024 || diff > 1024 {
				t.Errorf("sizes %+v: map %s: model %d bytes, kernel memlock %d", sizes, m.Name, model, m.Memlock)
			}
		}
		if measured < 13 {
			t.Errorf("the kernel reported memlock for %d of the 13 maps", measured)
		}
		_ = l.Close()
	}
}
