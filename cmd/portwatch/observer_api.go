package main

import (
	"cmp"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"

	"portwatch/bpf"
	"portwatch/catalog"
	"portwatch/export"
	"portwatch/probe"
)

// observerAPI serves probe.ExchangesPath: the observer's exchange counters
// for the clients a query names, so that `portwatch probe` on the far side
// can tell whether its requests arrived and whether the server answered
// (docs/probe.md, "The observer's endpoint"). It only reads: the counters
// are the same cumulative ones the classifier and /metrics read.
type observerAPI struct {
	be backend
	v  *verdicts
}

func (a observerAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "read-only: GET", http.StatusMethodNotAllowed)
		return
	}
	q, err := probe.ParseExchangeQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	err = flush(a.be)
	if err != nil {
		http.Error(w, "reading the counters: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s, err := a.be.Snapshot()
	if err != nil {
		http.Error(w, "reading the counters: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	a.v.mu.Lock()
	cat := a.v.cat
	a.v.mu.Unlock()
	doc := exchangesDoc(s, cat, q, observerInfo(a.be.Attachments()))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(doc)
}

func observerInfo(atts []export.Attachment) probe.ObserverInfo {
	info := probe.ObserverInfo{Host: hostname(), Interfaces: []string{}, Backend: "xdp"}
	for _, a := range atts {
		info.Interfaces = append(info.Interfaces, a.Interface)
		if a.Mode == "capture" {
			info.Backend = "capture"
		}
	}
	return info
}

// exchangesDoc selects the snapshot's exchanges of the query's clients and
// names them from the catalog.
func exchangesDoc(s bpf.Snapshot, cat *catalog.Catalog, q probe.ExchangeQuery, info probe.ObserverInfo) probe.ExchangesDoc {
	doc := probe.ExchangesDoc{
		Time: s.Time, Observer: info, Profiles: cat.ActiveProfiles(),
		Ports: []probe.TrackedPort{}, Exchanges: []probe.Exchange{},
	}
	for _, b := range cat.PortBindings() {
		doc.Ports = append(doc.Ports, probe.TrackedPort{Proto: b.Proto.String(), Port: b.Port, Service: b.Service.Name})
	}
	for _, e := range s.Exchanges {
		k, c := e.Key, e.Counters
		mac := net.HardwareAddr(k.ClientMAC[:])
		if !q.Match(k.Client, mac, k.Server) {
			continue
		}
		x := probe.Exchange{
			ServiceID: uint16(k.Service),
			Attempts:  c.Attempts, Retransmits: c.Retransmits, Answers: c.Answers, Followups: c.Followups,
			Resets: c.Resets, ICMPClosed: c.ICMPClosed, ICMPFiltered: c.ICMPFiltered, ICMPOther: c.ICMPOther,
			ReturnBlocked: c.ReturnBlocked, FirstSeen: c.FirstSeen, LastSeen: c.LastSeen,
		}
		if e := cat.Entry(k.Service); e != nil {
			x.Service, x.Proto, x.Port = e.Name, e.Proto.String(), e.Port
		}
		if k.IsDHCP() {
			x.ClientMAC = mac.String()
		} else {
			x.Client = k.Client.String()
		}
		if k.Server.IsValid() {
			x.Server = k.Server.String()
		}
		doc.Exchanges = append(doc.Exchanges, x)
	}
	slices.SortFunc(doc.Exchanges, func(a, b probe.Exchange) int {
		return cmp.Or(strings.Compare(a.Client, b.Client), strings.Compare(a.ClientMAC, b.ClientMAC),
			strings.Compare(a.Server, b.Server), cmp.Compare(a.ServiceID, b.ServiceID))
	})
	return doc
}
