package capture

import (
	"time"

	"portwatch/catalog"
)

// LiveOptions configure a live capture.
type LiveOptions struct {
	// Catalog chooses what the socket filter keeps (see filter.go). Nil
	// keeps every packet, which only debugging wants.
	Catalog *catalog.Catalog
	// Snaplen is the number of bytes kept of each packet: enough for every
	// header the twin reads, DHCP options included. Default 2048.
	Snaplen int
	// RingBytes is the size of the kernel ring that holds packets until
	// they are read. Default 8 MiB; a burst that fills it is counted as
	// dropped.
	RingBytes int
	// BlockTimeout is how long the kernel waits before handing over a ring
	// block that is not full, the latency of a quiet link. Default 50 ms.
	BlockTimeout time.Duration
	// Promiscuous also captures frames addressed to other hosts, as on a
	// mirror port.
	Promiscuous bool
}

// LiveSource is a live capture.
type LiveSource interface {
	Source
	// Stats returns the packets the kernel accepted for this capture and,
	// of those, the ones it dropped because the ring was full, both since
	// the capture opened. Dropped packets are lost to the counts.
	Stats() (received, dropped uint64, err error)
	// SetCatalog replaces the socket filter, for a port learned while
	// running (mountd). Packets already in the ring stay.
	SetCatalog(c *catalog.Catalog) error
}

const (
	defaultSnaplen      = 2048
	defaultRingBytes    = 8 << 20
	defaultBlockTimeout = 50 * time.Millisecond
)

func (o *LiveOptions) withDefaults() LiveOptions {
	out := *o
	if out.Snaplen <= 0 {
		out.Snaplen = defaultSnaplen
	}
	if out.Snaplen > maxSnaplen {
		out.Snaplen = maxSnaplen
	}
	if out.RingBytes <= 0 {
		out.RingBytes = defaultRingBytes
	}
	if out.BlockTimeout <= 0 {
		out.BlockTimeout = defaultBlockTimeout
	}
	return out
}
