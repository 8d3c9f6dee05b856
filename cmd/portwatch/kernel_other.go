//go:build !linux

package main

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/spf13/pflag"

	"portwatch/catalog"
)

// There is no eBPF here (AIX, say): observe has only the capture backend,
// and on AIX not even that: tcpdump feeds analyze instead.

type kernelFlags struct{}

func (kernelFlags) register(*pflag.FlagSet) {}

type kernelBackend struct{ backend }

func (*kernelBackend) mode() string { return "" }

// observeSupported: live capture needs Linux (XDP or AF_PACKET).
const observeSupported = false

func openKernel(context.Context, observeFlags, *catalog.Catalog,
	func(netip.Addr, netip.Addr, uint16, uint16, []byte), *slog.Logger) (*kernelBackend, error) {
	return nil, errNoKernelBackend
}

func kernelFallbackAllowed(error) bool { return true }
