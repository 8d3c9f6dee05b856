package loader

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf"

	"portwatch/bpf"
)

// The kernel's fixed costs, as its map_mem_usage callbacks count them
// (kernel/bpf/arraymap.c, hashtab.c) and as measured on Linux 6.18 x86_64:
// a struct bpf_array is 312 bytes, a struct bpf_htab 832 bytes plus a
// bucket-lock counter of 8 ints per CPU. Other kernels differ by a few
// hundred bytes per map, never per entry.
const (
	arrayHeaderBytes    = 312
	htabHeaderBytes     = 832
	htabLockBytesPerCPU = 8 * 4
	// struct htab_elem: the hash-list node, the LRU node and the hash,
	// before the key. The LRU's own bookkeeping lives in it.
	htabElemBytes = 48
	// struct bucket: a list head and a lock.
	htabBucketBytes = 16
	// A shared LRU keeps, per CPU, a struct bpf_lru_locallist (two list
	// heads, a steal index, a lock). The kernel does not count it in
	// memlock; the model does.
	lruLocalListBytesPerCPU = 40
	pageBytes               = 4096
)

// MapMemory is the kernel memory of one map.
type MapMemory struct {
	Name       string
	Type       ebpf.MapType
	MaxEntries int
	KeySize    int
	ValueSize  int
	// PerCPU marks a map with one value per CPU per entry.
	PerCPU bool
	// Bytes is the modelled kernel memory: what the kernel reports as the
	// map's memlock, plus (for LRU maps) the per-CPU lists it leaves out,
	// plus (for the learn events) the perf rings the loader maps per CPU.
	Bytes uint64
	// Memlock is what the kernel reports for the map (Map.Info), where a
	// loaded map was measured; 0 otherwise.
	Memlock uint64
}

// EstimateMemory models the kernel memory of every map at the given sizes on
// a machine with cpus possible CPUs. It needs no privileges: sizes come from
// the embedded object. The tables do not grow with cpus: each is an arena
// and an index shared by all CPUs. (cpus sets the size of the chunks that
// CPUs reserve, and an arena is rounded up to whole chunks: a few slots.)
func EstimateMemory(sizes MapSizes, cpus int) ([]MapMemory, error) {
	if cpus < 1 {
		return nil, fmt.Errorf("EstimateMemory: %d CPUs", cpus)
	}
	spec, err := bpf.LoadPortwatch()
	if err != nil {
		return nil, err
	}
	if err := sizeMaps(spec, sizes, cpus, 0); err != nil {
		return nil, err
	}
	var out []MapMemory
	for name, ms := range spec.Maps {
		entries := int(ms.MaxEntries)
		if ms.Type == ebpf.PerfEventArray && entries == 0 {
			// The loader sizes a perf event array to the possible CPUs.
			entries = cpus
		}
		m := MapMemory{
			Name:       name,
			Type:       ms.Type,
			MaxEntries: entries,
			KeySize:    int(ms.KeySize),
			ValueSize:  int(ms.ValueSize),
			PerCPU:     ms.Type == ebpf.PerCPUArray || ms.Type == ebpf.PerCPUHash || ms.Type == ebpf.LRUCPUHash,
		}
		m.Bytes, err = modelBytes(ms, entries, cpus)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

func nextPow2(n uint64) uint64 {
	p := uint64(1)
	for p < n {
		p <<= 1
	}
	return p
}

// modelBytes is the kernel's accounting of one map, with what it leaves out.
func modelBytes(ms *ebpf.MapSpec, entries, cpus int) (uint64, error) {
	n, c := uint64(entries), uint64(cpus)
	value := roundUp(uint64(ms.ValueSize), 8)
	key := roundUp(uint64(ms.KeySize), 8)
	switch ms.Type {
	case ebpf.Array:
		// Global-variable sections (.bss, .data, .rodata) are mapped into
		// userspace, whole pages each; the loader sets the flag at load.
		if ms.Flags&mmapableFlag != 0 || strings.HasPrefix(ms.Name, ".") {
			return roundUp(arrayHeaderBytes, pageBytes) + roundUp(n*value, pageBytes), nil
		}
		return arrayHeaderBytes + n*value, nil
	case ebpf.PerCPUArray:
		// A pointer per entry to the entry's per-CPU values.
		return arrayHeaderBytes + n*8 + n*value*c, nil
	case ebpf.PerfEventArray:
		// An array of event pointers, and the rings the loader's perf
		// reader maps: a metadata page and learnBufferPages per CPU.
		rings := c * (1 + learnBufferPages) * pageBytes
		return arrayHeaderBytes + n*8 + rings, nil
	case ebpf.LRUHash:
		// Preallocated: every entry exists from the start.
		return htabHeaderBytes + htabLockBytesPerCPU*c +
			htabBucketBytes*nextPow2(n) +
			(htabElemBytes+key+value)*n +
			lruLocalListBytesPerCPU*c, nil
	}
	return 0, fmt.Errorf("map %s: no memory model for type %s", ms.Name, ms.Type)
}

// BPF_F_MMAPABLE
const mmapableFlag = 1 << 10

// Memory reports every loaded map's modelled memory beside the memlock the
// kernel reports for it, at this machine's CPU count.
func (l *Loader) Memory() ([]MapMemory, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	out, err := EstimateMemory(l.cfg.Sizes, cpus)
	if err != nil {
		return nil, err
	}
	maps := map[string]*ebpf.Map{
		bpf.PortwatchMapCpuChunks:       l.objs.CpuChunks,
		bpf.PortwatchMapEphemeral:       l.objs.Ephemeral,
		bpf.PortwatchMapEphemeralIndex:  l.objs.EphemeralIndex,
		bpf.PortwatchMapExchanges:       l.objs.Exchanges,
		bpf.PortwatchMapExchangesIndex:  l.objs.ExchangesIndex,
		bpf.PortwatchMapLearnEvents:     l.objs.LearnEvents,
		bpf.PortwatchMapParseStats:      l.objs.ParseStats,
		bpf.PortwatchMapPorts:           l.objs.Ports,
		bpf.PortwatchMapServiceStats:    l.objs.ServiceStats,
		bpf.PortwatchMapUdpFlows:        l.objs.UdpFlows,
		bpf.PortwatchMapUdpFlowsIndex:   l.objs.UdpFlowsIndex,
		bpf.PortwatchMapUnexpected:      l.objs.Unexpected,
		bpf.PortwatchMapUnexpectedIndex: l.objs.UnexpectedIndex,
	}
	for i := range out {
		m, ok := maps[out[i].Name]
		if !ok {
			continue
		}
		info, err := m.Info()
		if err != nil {
			continue
		}
		if memlock, ok := info.Memlock(); ok {
			out[i].Memlock = memlock
		}
	}
	return out, nil
}

// KernelCounted is the part of Bytes that the kernel counts as the map's
// memlock; the rest are the LRU's per-CPU lists and the perf rings.
func (m MapMemory) KernelCounted(cpus int) uint64 {
	c := uint64(cpus)
	switch m.Type {
	case ebpf.LRUHash:
		return m.Bytes - lruLocalListBytesPerCPU*c
	case ebpf.PerfEventArray:
		return m.Bytes - c*(1+learnBufferPages)*pageBytes
	}
	return m.Bytes
}

// WriteMemoryReport prints the modelled memory of every map for each CPU
// count, and the totals.
func WriteMemoryReport(w io.Writer, sizes MapSizes, cpuCounts ...int) error {
	for _, cpus := range cpuCounts {
		maps, err := EstimateMemory(sizes, cpus)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%d CPUs\n", cpus)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "map\ttype\tentries\tkey\tvalue\tper CPU\tbytes\tMiB\t")
		var total uint64
		for _, m := range maps {
			perCPU := ""
			if m.PerCPU {
				perCPU = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%.2f\t\n", m.Name, m.Type, m.MaxEntries, m.KeySize,
				m.ValueSize, perCPU, m.Bytes, float64(m.Bytes)/(1<<20))
			total += m.Bytes
		}
		fmt.Fprintf(tw, "total\t\t\t\t\t\t%d\t%.2f\t\n", total, float64(total)/(1<<20))
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	return nil
}
