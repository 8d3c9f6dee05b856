//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * portwatch's packet program: an XDP program for ingress and a TC program for
 * egress share one parser and one set of maps, so a management node sees both
 * the requests it receives and the answers it sends.
 *
 * The observer never changes traffic: every path returns XDP_PASS or
 * TC_ACT_UNSPEC (TCX_NEXT). Direction comes from packet contents, never from
 * the hook, so the same logic serves ingress, egress, a mirror port and the Go
 * twin that reads captures (twin.go mirrors this file function by function).
 *
 * Cost rules: established TCP data touches only arrays (the port map and the
 * per-CPU counters); hash maps are used only by packets that change an
 * exchange's state (SYN, SYN-ACK, RST, UDP requests and answers, ICMP errors).
 * The C code holds no port numbers: the loader fills the port map from the
 * catalog.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "portwatch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EEXIST 17
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP6_OFFSET 0xfff8
#define IP6_MF 0x0001
/* TC programs pull at most this much into the linear area, enough for any
 * header chain portwatch parses. */
#define TC_PULL_BYTES 256

/* The shortest BOOTP prefix that pairs an exchange: op .. chaddr[6]. */
#define BOOTP_PAIR_BYTES 34
#define TFTP_DATA 3
#define TFTP_ERROR 5
#define BOOTP_REQUEST 1
#define BOOTP_REPLY 2

/* Types that only userspace reads, referenced once so that they reach BTF
 * and bpf2go generates their Go side. */
struct userspace_types {
	enum parse_counter parse_counter;
	enum port_flags port_flags;
	enum exchange_kind exchange_kind;
	enum proto_slot proto_slot;
	struct learn_meta learn_meta;
};
const struct userspace_types *unused_userspace_types __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOT_COUNT * 65536);
	__type(key, __u32);
	__type(value, struct port_entry);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PW_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct service_counters);
} service_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct parse_counters);
} parse_stats SEC(".maps");

/* One shared LRU (not per CPU): its memory does not grow with the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct exchange_key);
	__type(value, struct exchange_value);
} exchanges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ephemeral_key);
	__type(value, struct ephemeral_value);
} ephemeral SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct unexpected_key);
	__type(value, struct unexpected_value);
} unexpected SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} udp_flows SEC(".maps");

/* A byte per client port that a remembered TFTP-style request came from,
 * set before the request's ephemeral entry is inserted and never cleared: a
 * datagram whose ports have none cannot belong to such a transfer, and skips
 * the ephemeral table (two hash lookups for most UDP on no catalog port, one
 * for a TFTP ACK). A byte rather than a bit, so that setting it is a plain
 * store and no other CPU's update can be lost. The Go twin keeps the same
 * index. */
__u8 ephemeral_ports[65536];

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} learn_events SEC(".maps");

/* ICMPv4, declared here because linux/icmp.h pulls in libc headers. */
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3
#define ICMP_NET_ANO 9
#define ICMP_HOST_ANO 10
#define ICMP_PKT_FILTERED 13

struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

struct bootp_head {
	__u8 op;
	__u8 htype;
	__u8 hlen;
	__u8 hops;
	__be32 xid;
	__be16 secs;
	__be16 flags;
	__be32 ciaddr;
	__be32 yiaddr;
	__be32 siaddr;
	__be32 giaddr;
	__u8 chaddr[6];
};

/* The parse state of one packet. */
struct pkt {
	void *ctx;
	void *data_end;
	struct parse_counters *pc;
	__u64 len;
	void *l3;  /* the IPv4 or IPv6 header */
	bool v6;
	__u32 src[4]; /* IPv6, or IPv4-mapped: filled by load_addrs */
	__u32 dst[4];
};

enum direction {
	DIR_NONE,
	DIR_REQUEST, /* toward the service port */
	DIR_REPLY,   /* from the service port */
};

/* A service as resolved from a packet's ports. */
struct resolved {
	__u16 service;
	__u8 flags;
	__u8 dir; /* enum direction */
};

static __always_inline void count(struct pkt *p, int which)
{
	p->pc->count[which]++;
}

static __always_inline void map_v4(__u32 *out, __be32 addr)
{
	out[0] = 0;
	out[1] = 0;
	out[2] = bpf_htonl(0xffff);
	out[3] = addr;
}

/* Copy the packet's addresses into p->src and p->dst. Only packets that
 * change state need them, so established TCP never pays for the copy. */
static __always_inline void load_addrs(struct pkt *p)
{
	if (p->v6) {
		struct ipv6hdr *ip6 = p->l3;
		__builtin_memcpy(p->src, &ip6->saddr, 16);
		__builtin_memcpy(p->dst, &ip6->daddr, 16);
	} else {
		struct iphdr *ip = p->l3;
		map_v4(p->src, ip->saddr);
		map_v4(p->dst, ip->daddr);
	}
}

/* The time stamp of exchanges and tables: the kernel's tick counter. Its
 * resolution (1-10 ms) is the coarse clock's, plenty for windows of seconds,
 * and reading it is a load the verifier inlines, where the cheapest clock
 * helper costs more than a port lookup and a counter update together. The
 * loader turns ticks into time with portwatch_clock below. */
static __always_inline __u64 stamp(void)
{
	return bpf_jiffies64();
}

static __always_inline struct port_entry *port_lookup(__u32 slot, __u16 port)
{
	__u32 idx = (slot << 16) | port;
	return bpf_map_lookup_elem(&ports, &idx);
}

/* The row a client reaches at a server port: a client from a privileged
 * port (the table's Range column) may reach another row (rsh vs syslog). */
static __always_inline __u16 serving(struct port_entry *pe, __u16 client_port)
{
	if (!pe || (pe->flags & PORT_CLIENT_PORT))
		return 0;
	if (client_port != 0 && client_port < 1024)
		return pe->priv_service;
	return pe->service;
}

/* Which side of a packet is the service. When both ports are catalog ports,
 * the lower one is: clients send from high ports, and privileged-source
 * clients (rsh, NFS) still from ports above the service's own in practice.
 * The lower port is looked up first, so a packet to a service from a port
 * above it touches one entry of the port map. */
static __always_inline struct resolved resolve(__u32 slot, __u16 sport, __u16 dport)
{
	struct resolved r = {};
	struct port_entry *pe;
	__u16 service;

	if (dport <= sport) {
		pe = port_lookup(slot, dport);
		service = serving(pe, sport);
		if (service) {
			r.service = service;
			r.flags = pe->flags;
			r.dir = DIR_REQUEST;
			return r;
		}
		pe = port_lookup(slot, sport);
		service = serving(pe, dport);
		if (service) {
			r.service = service;
			r.flags = pe->flags;
			r.dir = DIR_REPLY;
		}
		return r;
	}
	pe = port_lookup(slot, sport);
	service = serving(pe, dport);
	if (service) {
		r.service = service;
		r.flags = pe->flags;
		r.dir = DIR_REPLY;
		return r;
	}
	pe = port_lookup(slot, dport);
	service = serving(pe, sport);
	if (service) {
		r.service = service;
		r.flags = pe->flags;
		r.dir = DIR_REQUEST;
	}
	return r;
}

static __always_inline struct service_counters *service_counters(__u16 service)
{
	__u32 key = service;
	return bpf_map_lookup_elem(&service_stats, &key);
}

/* Count a packet of a service (0: no catalog row) in its direction. */
static __always_inline struct service_counters *count_service(struct pkt *p, __u16 service, int dir)
{
	struct service_counters *sc = service_counters(service);
	if (!sc)
		return 0;
	sc->packets++;
	sc->bytes += p->len;
	if (dir == DIR_REQUEST)
		sc->requests++;
	else if (dir == DIR_REPLY)
		sc->replies++;
	return sc;
}

/* The counter of an exchange that a packet adds one to. */
enum bump {
	BUMP_ATTEMPT,
	BUMP_ANSWER,
	BUMP_RESET,
	BUMP_ICMP_CLOSED,
	BUMP_ICMP_FILTERED,
	BUMP_ICMP_OTHER,
	BUMP_RETURN_BLOCKED,
	BUMP_FOLLOWUP,
};

static __always_inline __u64 *bump_field(struct exchange_value *v, int what)
{
	switch (what) {
	case BUMP_ATTEMPT:
		return &v->attempts;
	case BUMP_ANSWER:
		return &v->answers;
	case BUMP_RESET:
		return &v->resets;
	case BUMP_ICMP_CLOSED:
		return &v->icmp_closed;
	case BUMP_ICMP_FILTERED:
		return &v->icmp_filtered;
	case BUMP_ICMP_OTHER:
		return &v->icmp_other;
	case BUMP_RETURN_BLOCKED:
		return &v->return_blocked;
	default:
		return &v->followups;
	}
}

/* Insert a new exchange already holding its first packet's counts, so a
 * new exchange costs one lookup and one insert. Returns the entry when
 * another CPU inserted the key first (the caller then adds to it), NULL
 * otherwise. */
static __always_inline struct exchange_value *exchange_insert(struct pkt *p, struct exchange_key *k,
							      struct exchange_value *fresh)
{
	long err = bpf_map_update_elem(&exchanges, k, fresh, BPF_NOEXIST);
	if (err == 0) {
		count(p, PC_EXCHANGE_NEW);
		return 0;
	}
	if (err != -EEXIST) {
		count(p, PC_MAP_UPDATE_FAILED);
		return 0;
	}
	return bpf_map_lookup_elem(&exchanges, k);
}

/* Add one to a counter of an exchange, creating it if needed. */
static __always_inline void exchange_bump(struct pkt *p, struct exchange_key *k, int what)
{
	__u64 now = stamp();
	struct exchange_value *v = bpf_map_lookup_elem(&exchanges, k);
	if (!v) {
		struct exchange_value fresh = {};
		fresh.first_seen = now;
		fresh.last_seen = now;
		*bump_field(&fresh, what) = 1;
		v = exchange_insert(p, k, &fresh);
		if (!v)
			return;
	}
	v->last_seen = now;
	__sync_fetch_and_add(bump_field(v, what), 1);
}

static __always_inline void exchange_ip(struct pkt *p, __u16 service, __u32 *client, __u32 *server, int what)
{
	struct exchange_key k = {};
	__builtin_memcpy(k.client, client, 16);
	__builtin_memcpy(k.server, server, 16);
	k.service = service;
	k.kind = EXCHANGE_IP;
	exchange_bump(p, &k, what);
}

/* A SYN: a new attempt, unless it repeats the last SYN's port and sequence
 * number (a retransmit). */
static __always_inline void exchange_syn(struct pkt *p, __u16 service, __u16 sport, __u32 seq)
{
	struct exchange_key k = {};
	__builtin_memcpy(k.client, p->src, 16);
	__builtin_memcpy(k.server, p->dst, 16);
	k.service = service;
	k.kind = EXCHANGE_IP;

	__u64 now = stamp();
	struct exchange_value *v = bpf_map_lookup_elem(&exchanges, &k);
	if (!v) {
		struct exchange_value fresh = {};
		fresh.first_seen = now;
		fresh.last_seen = now;
		fresh.attempts = 1;
		fresh.last_port = sport;
		fresh.last_seq = seq;
		v = exchange_insert(p, &k, &fresh);
		if (!v)
			return;
	}
	v->last_seen = now;
	if (v->last_port == sport && v->last_seq == seq && (v->attempts | v->retransmits)) {
		__sync_fetch_and_add(&v->retransmits, 1);
	} else {
		__sync_fetch_and_add(&v->attempts, 1);
		v->last_port = sport;
		v->last_seq = seq;
	}
}

static __always_inline void record_unexpected(struct pkt *p, __u8 proto, __u32 *server, __u16 port, __u32 *client)
{
	struct unexpected_key k = {};
	__builtin_memcpy(k.server, server, 16);
	k.port = port;
	k.proto = proto;

	__u64 now = stamp();
	struct unexpected_value *v = bpf_map_lookup_elem(&unexpected, &k);
	if (!v) {
		struct unexpected_value fresh = {};
		fresh.first_seen = now;
		long err = bpf_map_update_elem(&unexpected, &k, &fresh, BPF_NOEXIST);
		if (err == 0)
			count(p, PC_UNEXPECTED_NEW);
		else if (err != -EEXIST) {
			count(p, PC_MAP_UPDATE_FAILED);
			return;
		}
		v = bpf_map_lookup_elem(&unexpected, &k);
		if (!v)
			return;
	}
	v->last_seen = now;
	__sync_fetch_and_add(&v->answers, 1);
	__builtin_memcpy(v->client, client, 16);
}

/* Hand a copy of a portmapper packet to userspace, which learns the dynamic
 * ports from it. rpcbind traffic is rare, so the copy costs nothing that
 * matters. */
static __always_inline void learn(struct pkt *p)
{
	struct learn_meta meta = {};
	__u64 bytes = p->len;
	if (bytes > LEARN_MAX_BYTES)
		bytes = LEARN_MAX_BYTES;
	meta.frame_len = bytes;
	bpf_perf_event_output(p->ctx, &learn_events, BPF_F_CURRENT_CPU | (bytes << 32), &meta, sizeof(meta));
}

static __always_inline void on_tcp(struct pkt *p, struct tcphdr *th)
{
	__u16 sport = bpf_ntohs(th->source);
	__u16 dport = bpf_ntohs(th->dest);
	struct resolved r = {};

	/* The commonest packet by far, an established connection's segment,
	 * changes no exchange: count it by service and leave. Kept apart so
	 * that it carries none of the state-changing path's registers. */
	if (!th->syn && !th->rst) {
		r = resolve(SLOT_TCP, sport, dport);
		count_service(p, r.service, r.dir);
		if (r.dir == DIR_NONE)
			count(p, PC_NON_CATALOG);
		return;
	}

	load_addrs(p);
	bool syn = th->syn, ack = th->ack, rst = th->rst;

	if (syn && !ack) {
		/* A SYN names the service it asks for. */
		r.service = serving(port_lookup(SLOT_TCP, dport), sport);
		r.dir = r.service ? DIR_REQUEST : DIR_NONE;
	} else if (syn && ack) {
		r.service = serving(port_lookup(SLOT_TCP, sport), dport);
		r.dir = r.service ? DIR_REPLY : DIR_NONE;
	} else {
		r = resolve(SLOT_TCP, sport, dport);
	}

	struct service_counters *sc = count_service(p, r.service, r.dir);
	if (sc) {
		if (syn && !ack)
			sc->syn++;
		if (syn && ack)
			sc->syn_ack++;
		if (rst)
			sc->rst++;
	}

	if (r.dir == DIR_NONE) {
		count(p, PC_NON_CATALOG);
		if (syn && ack)
			record_unexpected(p, IPPROTO_TCP, p->src, sport, p->dst);
		return;
	}

	if (syn && !ack)
		exchange_syn(p, r.service, sport, bpf_ntohl(th->seq));
	else if (syn && ack)
		exchange_ip(p, r.service, p->dst, p->src, BUMP_ANSWER);
	else if (rst && r.dir == DIR_REPLY)
		exchange_ip(p, r.service, p->dst, p->src, BUMP_RESET);
}

static __always_inline void on_dhcp(struct pkt *p, void *payload, __u16 service, int port_dir)
{
	struct bootp_head *b = payload;
	/* Not sizeof(*b): the struct is padded to 36 bytes, and a 34-byte
	 * prefix already holds everything read here. */
	if ((void *)b + BOOTP_PAIR_BYTES > p->data_end) {
		count_service(p, service, port_dir);
		count(p, PC_TRUNC_DHCP);
		return;
	}
	/* The op code, not the ports, gives the direction: a relay talks to
	 * the server from port 67 to port 67. */
	int dir = b->op == BOOTP_REQUEST ? DIR_REQUEST : b->op == BOOTP_REPLY ? DIR_REPLY : DIR_NONE;
	count_service(p, service, dir);
	if (dir == DIR_NONE)
		return;

	struct exchange_key k = {};
	__builtin_memcpy(k.client, b->chaddr, 6);
	k.service = service;
	k.kind = EXCHANGE_DHCP;
	__u32 xid = bpf_ntohl(b->xid);
	__u64 now = stamp();

	struct exchange_value *v = bpf_map_lookup_elem(&exchanges, &k);
	if (!v) {
		/* An answer with no request seen still counts as an answer:
		 * nothing can pair it, and it shows the server is there. */
		struct exchange_value fresh = {};
		fresh.first_seen = now;
		fresh.last_seen = now;
		if (dir == DIR_REQUEST) {
			fresh.attempts = 1;
			fresh.last_seq = xid;
		} else {
			fresh.answers = 1;
		}
		v = exchange_insert(p, &k, &fresh);
		if (!v)
			return;
	}
	v->last_seen = now;
	if (dir == DIR_REQUEST) {
		__sync_fetch_and_add(&v->attempts, 1);
		v->last_seq = xid;
	} else if (v->last_seq == xid) {
		__sync_fetch_and_add(&v->answers, 1);
	}
}

/* The remembered request of client (from client_port) to a TFTP-style
 * server, with ek filled as its key (for an insert when there is none). */
static __always_inline struct ephemeral_value *ephemeral_find(struct ephemeral_key *ek, __u32 *client, __u32 *server,
							      __u16 client_port)
{
	__builtin_memcpy(ek->client, client, 16);
	__builtin_memcpy(ek->server, server, 16);
	ek->client_port = client_port;
	return bpf_map_lookup_elem(&ephemeral, ek);
}

/* UDP on no catalog port: an answer from a TFTP-style server's new port, the
 * client's packets back to that port, or traffic that may show an
 * unexpected open port. */
static __always_inline void on_udp_other(struct pkt *p, struct udphdr *uh, __u16 sport, __u16 dport)
{
	struct ephemeral_key ek = {};
	struct ephemeral_value *ev;
	if (ephemeral_ports[dport]) {
		ev = ephemeral_find(&ek, p->dst, p->src, dport);
		if (ev) {
			__u16 service = ev->service;
			count_service(p, service, DIR_REPLY);
			exchange_ip(p, service, p->dst, p->src, BUMP_ANSWER);
			return;
		}
	}
	if (ephemeral_ports[sport]) {
		ev = ephemeral_find(&ek, p->src, p->dst, sport);
		if (ev) {
			__u16 service = ev->service;
			count_service(p, service, DIR_NONE);
			exchange_ip(p, service, p->src, p->dst, BUMP_FOLLOWUP);
			return;
		}
	}

	count_service(p, 0, DIR_NONE);
	count(p, PC_NON_CATALOG);

	/* A TFTP transfer whose request was not seen (the observer started
	 * late, a capture lost it, the request was evicted) goes on between two
	 * ports in no catalog row: DATA, ACK and ERROR would read as a service
	 * answering on the server's new port. Such datagrams (opcode 3, 4 or 5)
	 * never show a port open. */
	__u8 *op = (void *)(uh + 1);
	if ((void *)(op + 2) <= p->data_end && op[0] == 0 && op[1] >= TFTP_DATA && op[1] <= TFTP_ERROR)
		return;

	struct flow_key fk = {};
	__builtin_memcpy(fk.src, p->dst, 16);
	__builtin_memcpy(fk.dst, p->src, 16);
	fk.sport = dport;
	fk.dport = sport;
	if (bpf_map_lookup_elem(&udp_flows, &fk)) {
		/* It comes back from the port the client sent to. */
		record_unexpected(p, IPPROTO_UDP, p->src, sport, p->dst);
		return;
	}
	__builtin_memcpy(fk.src, p->src, 16);
	__builtin_memcpy(fk.dst, p->dst, 16);
	fk.sport = sport;
	fk.dport = dport;
	if (bpf_map_lookup_elem(&udp_flows, &fk))
		return;
	struct flow_value fv = {.seen = stamp()};
	long err = bpf_map_update_elem(&udp_flows, &fk, &fv, BPF_NOEXIST);
	if (err == 0)
		count(p, PC_FLOW_NEW);
	else if (err != -EEXIST)
		count(p, PC_MAP_UPDATE_FAILED);
}

static __always_inline void on_udp(struct pkt *p, struct udphdr *uh)
{
	__u16 sport = bpf_ntohs(uh->source);
	__u16 dport = bpf_ntohs(uh->dest);
	struct resolved r = resolve(SLOT_UDP, sport, dport);

	load_addrs(p);
	if (r.dir == DIR_NONE) {
		on_udp_other(p, uh, sport, dport);
		return;
	}
	if (r.flags & PORT_BROADCAST) {
		on_dhcp(p, uh + 1, r.service, r.dir);
		return;
	}
	count_service(p, r.service, r.dir);
	if (r.flags & PORT_PORTMAPPER)
		learn(p);

	if (r.dir == DIR_REPLY) {
		exchange_ip(p, r.service, p->dst, p->src, BUMP_ANSWER);
		return;
	}
	exchange_ip(p, r.service, p->src, p->dst, BUMP_ATTEMPT);
	if (r.flags & PORT_EPHEMERAL_REPLY) {
		/* Remember the request so that the answer from the server's new
		 * port can be matched. Look first: an LRU insert of a key that
		 * exists takes (and may evict) an entry before it fails, and
		 * clients repeat their requests. */
		struct ephemeral_key ek = {};
		if (ephemeral_find(&ek, p->src, p->dst, sport))
			return;
		ephemeral_ports[sport] = 1;
		struct ephemeral_value ev = {.service = r.service};
		long err = bpf_map_update_elem(&ephemeral, &ek, &ev, BPF_NOEXIST);
		if (err == 0)
			count(p, PC_EPHEMERAL_NEW);
		else if (err != -EEXIST)
			count(p, PC_MAP_UPDATE_FAILED);
	}
}

enum unreachable_class {
	UNREACH_CLOSED,
	UNREACH_FILTERED,
	UNREACH_OTHER,
};

/* An ICMP or ICMPv6 destination unreachable quoting a packet from isrc to
 * idst: attribute it to the exchange that packet belonged to. */
static __always_inline void on_unreachable(struct pkt *p, __u8 proto, __u32 *isrc, __u32 *idst, void *il4, int cls)
{
	/* The first four bytes of TCP and UDP are the ports. */
	__be16 *ports = il4;
	if ((void *)(ports + 2) > p->data_end) {
		count(p, PC_TRUNC_ICMP_INNER);
		return;
	}
	__u16 isport = bpf_ntohs(ports[0]);
	__u16 idport = bpf_ntohs(ports[1]);
	__u32 slot = proto == IPPROTO_TCP ? SLOT_TCP : SLOT_UDP;
	struct resolved r = resolve(slot, isport, idport);

	if (r.dir == DIR_REQUEST) {
		struct service_counters *sc = service_counters(r.service);
		if (cls == UNREACH_CLOSED) {
			if (sc)
				sc->icmp_closed++;
			exchange_ip(p, r.service, isrc, idst, BUMP_ICMP_CLOSED);
		} else if (cls == UNREACH_FILTERED) {
			if (sc)
				sc->icmp_filtered++;
			exchange_ip(p, r.service, isrc, idst, BUMP_ICMP_FILTERED);
		} else {
			if (sc)
				sc->icmp_other++;
			exchange_ip(p, r.service, isrc, idst, BUMP_ICMP_OTHER);
		}
		return;
	}
	if (r.dir == DIR_REPLY && !(r.flags & PORT_BROADCAST)) {
		/* (DHCP clients take their answers on raw sockets, so the
		 * kernel's port unreachable for an answer proves nothing.) */
		exchange_ip(p, r.service, idst, isrc, BUMP_RETURN_BLOCKED);
		return;
	}
	if (proto == IPPROTO_UDP && ephemeral_ports[idport]) {
		/* An answer from a TFTP-style server's new port, refused on its
		 * way back. */
		struct ephemeral_key ek = {};
		struct ephemeral_value *ev = ephemeral_find(&ek, idst, isrc, idport);
		if (ev) {
			exchange_ip(p, ev->service, idst, isrc, BUMP_RETURN_BLOCKED);
			return;
		}
	}
	count(p, PC_ICMP_UNMATCHED);
}

static __always_inline void on_icmp4(struct pkt *p, struct icmphdr *ic)
{
	if ((void *)(ic + 1) > p->data_end) {
		count(p, PC_TRUNC_ICMP);
		return;
	}
	if (ic->type != ICMP_DEST_UNREACH) {
		count(p, PC_ICMP_NOT_UNREACHABLE);
		return;
	}
	int cls = UNREACH_OTHER;
	if (ic->code == ICMP_PORT_UNREACH)
		cls = UNREACH_CLOSED;
	else if (ic->code == ICMP_NET_ANO || ic->code == ICMP_HOST_ANO || ic->code == ICMP_PKT_FILTERED)
		cls = UNREACH_FILTERED;

	struct iphdr *iip = (void *)(ic + 1);
	if ((void *)(iip + 1) > p->data_end) {
		count(p, PC_TRUNC_ICMP_INNER);
		return;
	}
	if (iip->version != 4 || iip->ihl < 5 || (bpf_ntohs(iip->frag_off) & IP_OFFSET)) {
		count(p, PC_ICMP_UNMATCHED);
		return;
	}
	if (iip->protocol != IPPROTO_TCP && iip->protocol != IPPROTO_UDP) {
		count(p, PC_ICMP_UNMATCHED);
		return;
	}
	__u32 isrc[4], idst[4];
	map_v4(isrc, iip->saddr);
	map_v4(idst, iip->daddr);
	on_unreachable(p, iip->protocol, isrc, idst, (void *)iip + iip->ihl * 4, cls);
}

static __always_inline void on_icmp6(struct pkt *p, struct icmp6hdr *ic)
{
	/* The fixed ICMPv6 header is 8 bytes (type, code, checksum, unused). */
	if ((void *)ic + 8 > p->data_end) {
		count(p, PC_TRUNC_ICMP);
		return;
	}
	if (ic->icmp6_type != ICMPV6_DEST_UNREACH) {
		count(p, PC_ICMP_NOT_UNREACHABLE);
		return;
	}
	int cls = UNREACH_OTHER;
	if (ic->icmp6_code == ICMPV6_PORT_UNREACH)
		cls = UNREACH_CLOSED;
	else if (ic->icmp6_code == ICMPV6_ADM_PROHIBITED)
		cls = UNREACH_FILTERED;

	struct ipv6hdr *iip = (void *)ic + 8;
	if ((void *)(iip + 1) > p->data_end) {
		count(p, PC_TRUNC_ICMP_INNER);
		return;
	}
	if (iip->nexthdr != IPPROTO_TCP && iip->nexthdr != IPPROTO_UDP) {
		count(p, PC_ICMP_UNMATCHED);
		return;
	}
	__u32 isrc[4], idst[4];
	__builtin_memcpy(isrc, &iip->saddr, 16);
	__builtin_memcpy(idst, &iip->daddr, 16);
	on_unreachable(p, iip->nexthdr, isrc, idst, iip + 1, cls);
}

static __always_inline void on_l4(struct pkt *p, __u8 proto, void *l4, bool v6)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > p->data_end) {
			count(p, PC_TRUNC_TCP);
			return;
		}
		if (th->doff < 5) {
			count(p, PC_BAD_TCP_HEADER);
			return;
		}
		on_tcp(p, th);
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > p->data_end) {
			count(p, PC_TRUNC_UDP);
			return;
		}
		if (bpf_ntohs(uh->len) < sizeof(*uh)) {
			count(p, PC_BAD_UDP_LENGTH);
			return;
		}
		on_udp(p, uh);
	} else if (proto == IPPROTO_ICMP && !v6) {
		on_icmp4(p, l4);
	} else if (proto == IPPROTO_ICMPV6 && v6) {
		on_icmp6(p, l4);
	} else {
		count(p, PC_OTHER_L4);
	}
}

static __always_inline void on_ipv4(struct pkt *p, struct iphdr *ip)
{
	if ((void *)(ip + 1) > p->data_end) {
		count(p, PC_TRUNC_IPV4);
		return;
	}
	if (ip->version != 4 || ip->ihl < 5) {
		count(p, PC_BAD_IPV4_HEADER);
		return;
	}
	__u32 hlen = ip->ihl * 4;
	if (hlen > sizeof(*ip))
		count(p, PC_IPV4_OPTIONS);
	if ((void *)ip + hlen > p->data_end) {
		count(p, PC_TRUNC_IPV4);
		return;
	}
	__u16 frag = bpf_ntohs(ip->frag_off);
	if (frag & IP_OFFSET) {
		/* Only a first fragment carries the ports. */
		count(p, PC_FRAG_LATER);
		return;
	}
	if (frag & IP_MF)
		count(p, PC_FRAG_FIRST);
	p->l3 = ip;
	on_l4(p, ip->protocol, (void *)ip + hlen, false);
}

static __always_inline void on_ipv6(struct pkt *p, struct ipv6hdr *ip6)
{
	if ((void *)(ip6 + 1) > p->data_end) {
		count(p, PC_TRUNC_IPV6);
		return;
	}
	__u8 next = ip6->nexthdr;
	void *pos = ip6 + 1;
	bool walked = false;

#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS) {
			struct ipv6_opt_hdr *oh = pos;
			if ((void *)(oh + 1) > p->data_end) {
				count(p, PC_TRUNC_IPV6_EXT);
				return;
			}
			next = oh->nexthdr;
			pos += (oh->hdrlen + 1) * 8;
			walked = true;
		} else if (next == IPPROTO_FRAGMENT) {
			struct ipv6_frag *fh = pos;
			if ((void *)(fh + 1) > p->data_end) {
				count(p, PC_TRUNC_IPV6_EXT);
				return;
			}
			walked = true;
			__u16 off = bpf_ntohs(fh->frag_off);
			if (off & IP6_OFFSET) {
				count(p, PC_IPV6_EXT_HEADERS);
				count(p, PC_FRAG_LATER);
				return;
			}
			if (off & IP6_MF)
				count(p, PC_FRAG_FIRST);
			next = fh->nexthdr;
			pos = fh + 1;
		} else {
			break;
		}
	}
	if (walked)
		count(p, PC_IPV6_EXT_HEADERS);
	if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS || next == IPPROTO_FRAGMENT) {
		count(p, PC_IPV6_EXT_TOO_DEEP);
		return;
	}
	p->l3 = ip6;
	p->v6 = true;
	on_l4(p, next, pos, true);
}

static __always_inline void process(void *ctx, void *data, void *data_end, __u64 len)
{
	__u32 zero = 0;
	struct pkt p = {};
	p.pc = bpf_map_lookup_elem(&parse_stats, &zero);
	if (!p.pc)
		return;
	p.ctx = ctx;
	p.data_end = data_end;
	p.len = len;
	count(&p, PC_PACKETS);

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end) {
		count(&p, PC_TRUNC_ETHERNET);
		return;
	}
	__be16 proto = eth->h_proto;
	void *pos = eth + 1;
	int tags = 0;

#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = pos;
		if ((void *)(vh + 1) > data_end) {
			count(&p, PC_TRUNC_VLAN);
			return;
		}
		proto = vh->encapsulated_proto;
		pos = vh + 1;
		tags++;
	}
	if (tags == 1)
		count(&p, PC_VLAN);
	else if (tags == 2)
		count(&p, PC_QINQ);
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		count(&p, PC_VLAN_TOO_DEEP);
		return;
	}

	if (proto == bpf_htons(ETH_P_IP))
		on_ipv4(&p, pos);
	else if (proto == bpf_htons(ETH_P_IPV6))
		on_ipv6(&p, pos);
	else
		count(&p, PC_NON_IP);
}

/* The tick counter and the monotonic clock read together, for the loader:
 * it runs this program (BPF_PROG_TEST_RUN, never attached) to learn how many
 * nanoseconds a tick lasts and where the ticks stand against the clock. */
__u64 clock_ticks;
__u64 clock_mono_ns;

SEC("xdp")
int portwatch_clock(struct xdp_md *ctx)
{
	clock_ticks = bpf_jiffies64();
	clock_mono_ns = bpf_ktime_get_ns();
	return XDP_PASS;
}

SEC("xdp")
int portwatch_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	process(ctx, data, data_end, data_end - data);
	return XDP_PASS;
}

SEC("tc")
int portwatch_tc(struct __sk_buff *skb)
{
	/* Headers of an outgoing packet may sit outside the linear area; pull
	 * them in (this copies nothing the receiver sees differently). */
	__u32 want = skb->len < TC_PULL_BYTES ? skb->len : TC_PULL_BYTES;
	if (skb->data_end - skb->data < want)
		bpf_skb_pull_data(skb, want);
	process(skb, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->len);
	return TC_ACT_UNSPEC;
}
