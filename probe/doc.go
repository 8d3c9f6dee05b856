// Package probe asks, from the node side of a firewall, whether every xCAT
// service a host serves would get through right now: for each catalog row
// of the host's role it sends one request that the service really answers
// (a TCP connect, a DHCP DISCOVER, a TFTP read request, a DNS query, an SNMP
// get, an RMCP presence ping, rpcbind and NFS calls, ...) and classifies what
// comes back as nmap does: open, closed (RST or ICMP port unreachable),
// filtered (ICMP administratively prohibited), or no answer.
//
// Silence is ambiguous from the probing side alone: the request may have
// been dropped on its way in, or the answer on its way back. When a
// `portwatch observe` runs on the far side, Refine reads its exchange
// counters before and after the probes and tells these apart:
// blocked-inbound, service-silent, blocked-return.
//
// Sockets are ordinary and unprivileged wherever the protocol allows:
// ICMP errors are read from the socket's error queue (IP_RECVERR,
// IPV6_RECVERR). Only a broadcast DHCP DISCOVER, sent from 0.0.0.0 port 68
// as a booting node sends it, needs a raw (AF_PACKET) socket.
//
// docs/probe.md describes, byte by byte, what each probe sends.
package probe
