package main

import (
	"net/netip"
	"testing"
	"time"

	"portwatch/bpf/packets"
	"portwatch/catalog"
	"portwatch/catalog/rpcbind"
	"portwatch/classify"
)

// TestLearnBeforeComplete: the backend hands rpcbind datagrams over from
// its first packet, before observe has made the classifier. A port learned
// then must not crash the pipeline, and must reach the backend and the
// classifier when they join (learning it again would change nothing).
func TestLearnBeforeComplete(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := &verdicts{cat: cat, snooper: rpcbind.NewSnooper()}
	node, mn := netip.MustParseAddr("10.0.1.11"), netip.MustParseAddr("10.0.0.1")
	now := time.Unix(1700000000, 0)
	const mountd, udp, port = 100005, 17, 20048
	v.learn(node, mn, 700, 111, packets.RPCGetPortCall(7, mountd, udp), now)
	v.learn(mn, node, 111, 700, packets.RPCGetPortReply(7, port), now) // no classifier yet

	cfg, err := (&classify.Flags{Window: classify.DefaultWindow, MinAttempts: classify.DefaultMinAttempts, MinSpan: classify.DefaultMinSpan}).Config(cat, classify.Observer{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := classify.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var backend *catalog.Catalog
	if err := v.complete(c, func(next *catalog.Catalog) error { backend = next; return nil }, cat); err != nil {
		t.Fatal(err)
	}
	if backend == nil || backend.Lookup(catalog.UDP, port, 800) == nil {
		t.Errorf("the backend did not get the port learned before it joined")
	}
}
