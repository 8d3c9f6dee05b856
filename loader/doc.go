// Package loader is portwatch's kernel backend: it loads the packet programs
// of package bpf, fills their port map from the catalog, attaches them to
// the watched interfaces (XDP on ingress, TC on egress) and reads their maps
// into bpf.Snapshot values.
//
// # Attaching
//
// The ingress program attaches with a bpf_link (BPF_LINK_CREATE): native
// mode where the driver has it, else generic mode when the mode is auto;
// Attachments says which each interface got. The egress program attaches
// as a TCX bpf_link (Linux 6.6+), or on older kernels as a direct-action
// bpf filter on the interface's clsact qdisc, through netlink. Nothing is
// pinned.
//
// A bpf_link lives as long as the file descriptor that holds it: when the
// process exits, however it exits (SIGKILL included), the kernel detaches
// the program. A clsact filter is different: it holds the program itself
// and stays after the process dies, running and counting into maps that
// nobody reads. Each filter's handle is therefore the pid of the portwatch
// that added it, and Open removes every portwatch filter whose process is
// gone or no longer holds the filter's program. By hand:
//
//	tc filter show dev eth0 egress
//	tc filter del dev eth0 egress prio 1 handle 0x<pid> bpf
//
// # Required capabilities
//
// Loading and attaching need CAP_BPF and CAP_NET_ADMIN; the perf buffer
// that carries rpcbind packets to userspace needs CAP_PERFMON (or CAP_SYS_ADMIN
// on kernels before 5.8, which also stands in for CAP_BPF). Running as
// root gives all of them. Without them, `--backend capture` watches the
// same traffic through AF_PACKET and the Go twin, with no BPF at all.
//
// # Counters
//
// Every counter is cumulative. The loader never resets or deletes a map
// entry except in the port map, which it owns: the classifier computes
// rates from two snapshots, and an exchange that vanished from the bounded
// table was evicted.
package loader
