package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/catalog/rpcbind"
	"portwatch/classify"
	"portwatch/export"
)

// verdicts is what observe and analyze share downstream of the packets:
// the catalog (and the ports learned while running), the classifier, the
// sinks, and the live event lines people read.
type verdicts struct {
	mu         sync.Mutex
	cat        *catalog.Catalog
	classifier *classify.Classifier
	sinks      *export.Set
	// lines, when set, gets each event as one line as it happens.
	lines io.Writer
	// keep keeps every event for a final JSON document.
	keep   bool
	events []classify.Event
	// emitted counts the events so far.
	emitted int

	snooper *rpcbind.Snooper
	// learned keeps the ports learned so far, to carry them over to a
	// reloaded catalog.
	learned []rpcbind.Mapping
	// onCatalog tells the packet side (kernel maps, twin, socket filter)
	// about a catalog with a learned port.
	onCatalog []func(*catalog.Catalog) error
	warn      func(format string, args ...any)
}

// window judges one snapshot and hands its events on.
func (v *verdicts) window(s bpf.Snapshot) {
	for _, ev := range v.classifier.Update(s) {
		v.emit(ev)
	}
}

func (v *verdicts) emit(ev classify.Event) {
	v.emitted++
	v.sinks.Emit(ev)
	if v.lines != nil {
		fmt.Fprintln(v.lines, eventLine(ev))
	}
	if v.keep {
		v.events = append(v.events, ev)
	}
}

// eventLine is an event as one line for people.
func eventLine(ev classify.Event) string {
	return fmt.Sprintf("%s  %-21s  %s", ev.Time.UTC().Format("2006-01-02 15:04:05"), ev.Verdict, ev.Message)
}

// learn reads an rpcbind datagram; a port it reveals for a dynamic row
// (mountd) goes into the catalog, and from there into the packet side and
// the classifier.
func (v *verdicts) learn(src, dst netip.Addr, sport, dport uint16, payload []byte, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range v.snooper.Datagram(src, dst, sport, dport, payload, now) {
		next, changed := v.cat.WithRPCPort(m.Program, m.Proto, m.Port)
		if !changed {
			continue
		}
		v.learned = append(v.learned, m)
		v.cat = next
		for _, f := range v.onCatalog {
			if err := f(next); err != nil && v.warn != nil {
				v.warn("applying the learned port %s/%d of RPC program %d: %v", m.Proto, m.Port, m.Program, err)
			}
		}
		if v.classifier != nil { // nil until complete
			v.classifier.SetCatalog(next)
		}
	}
}

// complete gives the pipeline its classifier and the backend's catalog
// setter, once both exist. The backend learns ports from its first packet
// on, before that: a port learned meanwhile (opened is the catalog the
// backend started with) is applied to both here, or the kernel would never
// count it (learning the same port again changes nothing).
func (v *verdicts) complete(c *classify.Classifier, backendCatalog func(*catalog.Catalog) error, opened *catalog.Catalog) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.classifier = c
	v.onCatalog = append(v.onCatalog, backendCatalog)
	if v.cat == opened {
		return nil
	}
	c.SetCatalog(v.cat)
	return backendCatalog(v.cat)
}

// setCatalog replaces the catalog (an override file reloaded on SIGHUP).
func (v *verdicts) setCatalog(cat *catalog.Catalog) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range v.learned {
		cat, _ = cat.WithRPCPort(m.Program, m.Proto, m.Port)
	}
	for _, f := range v.onCatalog {
		if err := f(cat); err != nil {
			return err
		}
	}
	v.cat = cat
	v.classifier.SetCatalog(cat)
	return nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
