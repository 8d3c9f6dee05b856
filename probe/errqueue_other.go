//go:build !linux

package probe

import "syscall"

// Elsewhere (AIX) sockets report ICMP errors as an errno only: probe tells
// "refused" from "unreachable", not "prohibited" from "host unreachable".

func recvErrControl(string, string, syscall.RawConn) error { return nil }

func readErrQueue(int) *ICMPError { return nil }

func keepSocket(syscall.RawConn, bool) (int, error) { return -1, nil }

func releaseSocket(int) {}
