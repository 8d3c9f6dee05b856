//go:build linux

package capture

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
)

// TestBackendLearnMayCallBack: a Learn callback may call the backend back,
// as observe does when an rpcbind answer reveals mountd's port (it applies
// the learned port with SetCatalog, and takes a Snapshot every window). The
// callback used to run with the backend's lock held, so the reader
// deadlocked on its own lock and every later Snapshot waited for ever.
func TestBackendLearnMayCallBack(t *testing.T) {
	n := newTestNet(t)
	cat := builtinCatalog(t)
	var b atomic.Pointer[Backend]
	called := make(chan error, 16)
	learn := func(src, dst netip.Addr, sport, dport uint16, payload []byte) {
		be := b.Load()
		if be == nil {
			return
		}
		err := be.SetCatalog(cat)
		if err == nil {
			_, err = be.Snapshot()
		}
		called <- err
	}
	n.inNS(t, n.nsA, func() {
		be, err := StartBackend([]string{n.ifA}, BackendOptions{Catalog: cat, Learn: learn,
			Live: LiveOptions{BlockTimeout: 10 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		b.Store(be)
	})
	// A datagram to rpcbind's port 111 is one the twin hands to Learn.
	n.inNS(t, n.nsB, func() {
		u, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: n.ipA, Port: 111})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if _, err := u.Write([]byte("rpcbind call")); err != nil {
			t.Fatal(err)
		}
	})
	select {
	case err := <-called:
		if err != nil {
			t.Errorf("the backend, called back from Learn: %v", err)
		}
	case <-time.After(10 * time.Second):
		// The reader is stuck for good: Close would wait for it too.
		t.Fatal("Learn was not called, or its call back into the backend never returned")
	}
	if err := b.Load().Close(); err != nil {
		t.Error(err)
	}
}

// TestBackendFlushCountsQueued sends datagrams and takes the last snapshot
// at once, as observe does when it stops: with a block timeout of a second,
// the ring has not handed them over yet, and Flush must wait until it has
// and the twin has counted them all.
func TestBackendFlushCountsQueued(t *testing.T) {
	n := newTestNet(t)
	cat := builtinCatalog(t)
	const datagrams, syslogPort = 5, 514
	syslog := cat.Lookup(catalog.UDP, syslogPort, 40000)
	if syslog == nil {
		t.Fatal("the built-in catalog has no syslog row on udp/514")
	}
	var be *Backend
	n.inNS(t, n.nsA, func() {
		var err error
		be, err = StartBackend([]string{n.ifA}, BackendOptions{Catalog: cat, Twin: bpf.DefaultTwinConfig,
			Live: LiveOptions{BlockTimeout: time.Second}})
		if err != nil {
			t.Error(err)
		}
	})
	if be == nil {
		t.FailNow()
	}
	defer be.Close()
	// Unconnected, so that the port-unreachable answers (nothing listens)
	// do not fail the later writes. inNS runs fn on a goroutine of its own:
	// no t.Fatal there.
	n.inNS(t, n.nsB, func() {
		u, err := net.ListenUDP("udp4", nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer u.Close()
		for range datagrams {
			if _, err := u.WriteTo([]byte("<14>last words"), &net.UDPAddr{IP: n.ipA, Port: syslogPort}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	if err := be.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err := be.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Services[syslog.ID].Requests; got != datagrams {
		t.Errorf("syslog requests counted after Flush: %d, want %d", got, datagrams)
	}
}
