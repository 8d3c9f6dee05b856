//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/bpf/packets"
	"portwatch/catalog"
	"portwatch/classify"
	"portwatch/internal/privtest"
	"portwatch/loader"
)

// TestAnalyzeMatchesKernel: the same packets through the kernel program
// (BPF_PROG_TEST_RUN) and through `portwatch analyze` of a pcap of them give
// the same counters and the same verdicts. The kernel stamps packets with
// its own clock when they are run, so its exchanges are judged with the
// capture's times: the verdicts then depend only on what both counted.
func TestAnalyzeMatchesKernel(t *testing.T) {
	privtest.RequireRoot(t, "BPF_PROG_TEST_RUN needs CAP_BPF")
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1700000000, 0)
	step := time.Second

	// Sequences with verdicts: silence, resets, ICMP errors, an answer
	// refused on its way back, an unexpected port, and a busy mix.
	status := func(i int) []byte {
		return packets.TCP(packets.Node, packets.MN, uint16(40000+i), 3002, packets.SYN, packets.Options{Seq: uint32(i)})
	}
	xcatd := packets.TCP(packets.Node, packets.MN, 40100, 3001, packets.SYN, packets.Options{Seq: 9})
	snmp := packets.UDP(packets.MN, packets.Addr("10.0.3.2"), 40200, 161, packets.Options{Payload: []byte("get")})
	cases := map[string][][]byte{
		"silence": {status(0), status(1), status(2), status(3)},
		"reset":   {xcatd, packets.TCP(packets.MN, packets.Node, 3001, 40100, packets.RSTACK, packets.Options{Ack: 10})},
		"icmp":    {snmp, packets.Unreachable(packets.Addr("10.0.3.2"), 3, snmp), status(0), packets.Unreachable(packets.Router, 13, status(0))},
		"unexpected": {packets.TCP(packets.Node, packets.MN, 40300, 8080, packets.SYN, packets.Options{}),
			packets.TCP(packets.MN, packets.Node, 8080, 40300, packets.SYNACK, packets.Options{})},
		"mixed": packets.MixedRound(),
	}
	for name, frames := range cases {
		t.Run(name, func(t *testing.T) {
			// The kernel's counters.
			l, err := loader.Load(loader.Config{Catalog: cat})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for _, f := range frames {
				if ret, err := l.RunXDP(f); err != nil || ret != 2 {
					t.Fatalf("XDP run: %d, %v", ret, err)
				}
			}
			kernel, err := l.Snapshot()
			if err != nil {
				t.Fatal(err)
			}

			// analyze of a pcap of the same frames.
			var pcap bytes.Buffer
			writePcap(t, &pcap, frames, start, step)
			path := filepath.Join(t.TempDir(), name+".pcap")
			if err := os.WriteFile(path, pcap.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			// One window over the whole capture, as the kernel's counters
			// are judged below in one window.
			rep, code, errOut := analyzeJSON(t, "--window", "1h", path)
			if code != exitOK {
				t.Fatalf("analyze: exit %d: %s", code, errOut)
			}
			if got, want := rep.Services, serviceReports(cat, kernel); !slices.Equal(got, want) {
				t.Errorf("per-service counters:\nanalyze %+v\nkernel  %+v", got, want)
			}
			if got, want := rep.Parse, parseReport(kernel); !mapsEqual(got, want) {
				t.Errorf("parse counters: analyze %v, kernel %v", got, want)
			}

			// The kernel's exchanges, judged in capture time.
			twin := bpf.NewTwin(cat, bpf.DefaultTwinConfig)
			for i, f := range frames {
				twin.Ethernet(f, len(f), start.Add(time.Duration(i)*step))
			}
			timed := twin.Snapshot()
			timedExchanges := timed.ExchangeMap()
			for i := range kernel.Exchanges {
				e := &kernel.Exchanges[i]
				tc, ok := timedExchanges[e.Key]
				if !ok {
					t.Fatalf("exchange %+v: the kernel has it, a pcap replay does not", e.Key)
				}
				e.Counters.FirstSeen, e.Counters.LastSeen = tc.FirstSeen, tc.LastSeen
			}
			for k, u := range kernel.Unexpected {
				u.FirstSeen, u.LastSeen = timed.Unexpected[k].FirstSeen, timed.Unexpected[k].LastSeen
				kernel.Unexpected[k] = u
			}
			kernel.Time = timed.Time
			c, err := classify.New(classify.Config{Catalog: cat, Observer: rep.Summary.Observer})
			if err != nil {
				t.Fatal(err)
			}
			kernelVerdicts := verdictSet(c.Update(kernel))
			if got := verdictSet(rep.Events); !slices.Equal(got, kernelVerdicts) {
				t.Errorf("verdicts:\nanalyze %v\nkernel  %v", got, kernelVerdicts)
			}
			if name != "mixed" && len(kernelVerdicts) == 0 {
				t.Error("this sequence must give a verdict")
			}
		})
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// verdictSet is the events' identities, sorted.
func verdictSet(events []classify.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, string(e.Verdict)+" "+e.Service+" "+string(e.Reason)+" "+e.Client+" "+e.Server)
	}
	slices.Sort(out)
	return out
}
