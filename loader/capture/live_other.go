//go:build !linux

package capture

import (
	"fmt"
	"runtime"
)

// OpenLive is Linux-only: it uses AF_PACKET sockets.
func OpenLive(iface string, opts LiveOptions) (LiveSource, error) {
	if runtime.GOOS == "aix" {
		return nil, fmt.Errorf("capturing live on %s: AIX has no AF_PACKET; capture with tcpdump and analyze the stream: tcpdump -U -w - -i %s | portwatch analyze -", iface, iface)
	}
	return nil, fmt.Errorf("capturing live on %s: live capture needs Linux AF_PACKET; on %s capture with tcpdump and analyze the stream: tcpdump -U -w - -i %s | portwatch analyze -", iface, runtime.GOOS, iface)
}
