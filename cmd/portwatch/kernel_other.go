//go:build !linux

package main

import (
	"context"
	"errors"
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

var errNoKernelBackend = errors.New("the XDP backend needs Linux; here, capture with tcpdump and analyze the stream: " +
	"tcpdump -U -w - -i en0 | portwatch analyze -")

func openKernel(context.Context, observeFlags, *catalog.Catalog,
	func(netip.Addr, netip.Addr, uint16, uint16, []byte), *slog.Logger) (*kernelBackend, error) {
	return nil, errNoKernelBackend
}

func kernelFallbackAllowed(error) bool { return true }
