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

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP6_OFFSET 0xfff8
#define IP6_MF 0x0001
/* TC programs pull at most this much into the linear area, enough for any
 * header chain portwatch parses. */
#define TC_PULL_BYTES 256

/* The shortest BOOTP prefix that pairs an exchange: op .. chaddr[6]. */
#define BOOTP_PAIR_BYTES 34
/* The most data a SYN can carry: a reset answering it acknowledges its
 * sequence number + 1 + its length. */
#define SYN_DATA_MAX 0xffff
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
	enum slot_state slot_state;
	enum table_shape table_shape;
	enum flow_way flow_way;
	enum table_id table_id;
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

/* The tables (see portwatch.h): for each, an arena of slots and an index of
 * buckets, shared by all CPUs, so their memory does not grow with the CPUs.
 * The loader sizes them and sets the sizes and the hash seed below before
 * loading. */
#define TABLE(name, slot_type, slots, buckets)                                                                 \
	struct {                                                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                                              \
		__uint(map_flags, BPF_F_MMAPABLE);                                                             \
		__uint(max_entries, slots);                                                                    \
		__type(key, __u32);                                                                            \
		__type(value, slot_type);                                                                      \
	} name SEC(".maps");                                                                                   \
	struct {                                                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                                              \
		__uint(map_flags, BPF_F_MMAPABLE);                                                             \
		__uint(max_entries, buckets);                                                                  \
		__type(key, __u32);                                                                            \
		__type(value, struct index_bucket);                                                            \
	} name##_index SEC(".maps");                                                                           \
	const volatile __u32 name##_slots = slots;                                                             \
	const volatile __u32 name##_bucket_mask = buckets - 1;                                                 \
	const volatile __u32 name##_slot_mask = (slots << 1) - 1;

TABLE(exchanges, struct exchange_slot, 65536, 16384)
TABLE(ephemeral, struct ephemeral_slot, 16384, 4096)
TABLE(unexpected, struct unexpected_slot, 4096, 1024)
TABLE(udp_flows, struct flow_slot, 16384, 4096)

/* Slots a CPU reserves at once, per table (enum table_id): at most
 * CHUNK_MAX, and few enough that the chunks of all CPUs are a small part of
 * the arena. Set by the loader. */
const volatile __u32 chunk_slots[TABLE_COUNT] = {CHUNK_MAX, CHUNK_MAX, CHUNK_MAX, CHUNK_MAX};

/* The hash's seed: random per load, so that a sender cannot aim packets at
 * one bucket. Set by the loader. */
const volatile __u64 table_seed = 0x2545f4914f6cdd1dULL;

/* Each table's hand: slots reserved so far, all CPUs together. The slot it
 * points at is this count modulo the arena's size. */
__u64 table_hands[TABLE_COUNT];

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct table_chunks);
} cpu_chunks SEC(".maps");

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

/* The hash of a key of words 8-byte words: a multiply-xorshift round per
 * word. Its low bits pick the index bucket, its high bits the tag. */
static __always_inline __u64 key_hash(const __u64 *key, int words)
{
	__u64 h = table_seed;
	for (int i = 0; i < words; i++) {
		h = (h ^ key[i]) * 0x9e3779b97f4a7c15ULL;
		h ^= h >> 29;
	}
	return h;
}

/* A published slot's state and the key's index tag: the hash's high bits,
 * never SLOT_EMPTY or SLOT_BUSY. */
static __always_inline __u32 key_tag(__u64 h)
{
	return (__u32)(h >> 32) | 2;
}

static __always_inline bool key_equal(const __u64 *a, const __u64 *b, int words)
{
	__u64 diff = 0;
	for (int i = 0; i < words; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* Every slot starts with its state and where, then the key at offset 8. */
#define SLOT_KEY(slot) ((__u64 *)((void *)(slot) + 8))
#define SLOT_WHERE(slot) (((__u32 *)(slot))[1])

/* One table, as the functions below take it. */
struct table {
	void *arena;
	void *index;
	__u32 slots;
	__u32 bucket_mask;
	__u32 slot_mask; /* an index entry's bits that hold slot + 1 */
	int id;		 /* enum table_id */
};

#define TABLE_OF(name, table_id)                                                                               \
	((struct table){.arena = &name,                                                                        \
			.index = &name##_index,                                                                \
			.slots = name##_slots,                                                                 \
			.bucket_mask = name##_bucket_mask,                                                     \
			.slot_mask = name##_slot_mask,                                                         \
			.id = table_id})

/* Note that a packet used a slot, so that the hand passes it by once. A
 * write only when the bit is not set (most packets find it set), and an
 * atomic one: a plain store of the word read could put back the index
 * entry of a key that just gave the slot up. */
static __always_inline void slot_touch(void *slot)
{
	if (!(*(volatile __u32 *)&SLOT_WHERE(slot) & SLOT_REFERENCED))
		__sync_fetch_and_or(&SLOT_WHERE(slot), SLOT_REFERENCED);
}

/* The published slot holding key, or NULL; *at is set to its index. */
static __always_inline void *table_find(struct table *t, const __u64 *key, int words, __u64 h, __u32 *at)
{
	__u32 b = (__u32)h & t->bucket_mask;
	struct index_bucket *bucket = bpf_map_lookup_elem(t->index, &b);
	if (!bucket)
		return 0;
	__u32 tag = key_tag(h);
	__u32 want = tag & ~t->slot_mask;
#pragma clang loop unroll(disable)
	for (int i = 0; i < BUCKET_ENTRIES; i++) {
		__u32 entry = *(volatile __u32 *)&bucket->entry[i];
		if ((entry & ~t->slot_mask) != want || !(entry & t->slot_mask))
			continue;
		__u32 idx = (entry & t->slot_mask) - 1;
		__u32 *slot = bpf_map_lookup_elem(t->arena, &idx);
		if (!slot)
			continue;
		/* The entry may be stale, its slot gone to another key; or
		 * its tag bits may match another key's. */
		if (*(volatile __u32 *)slot == tag && key_equal(SLOT_KEY(slot), key, words)) {
			slot_touch(slot);
			*at = idx;
			return slot;
		}
	}
	return 0;
}

/* The index entry of the slot at idx whose state is tag. */
static __always_inline __u32 index_entry(struct table *t, __u32 tag, __u32 idx)
{
	return (tag & ~t->slot_mask) | (idx + 1);
}

/* Take the index entry of the slot at idx away, if it still has it. */
static __always_inline void index_forget(struct table *t, __u32 where, __u32 state, __u32 idx)
{
	where &= SLOT_WHERE_MASK;
	if (where == SLOT_NOT_INDEXED)
		return;
	__u32 b = where / BUCKET_ENTRIES;
	struct index_bucket *bucket = bpf_map_lookup_elem(t->index, &b);
	if (!bucket)
		return;
	__sync_val_compare_and_swap(&bucket->entry[where % BUCKET_ENTRIES], index_entry(t, state, idx), 0);
}

/* Index the slot at idx, being written (state SLOT_BUSY), under its key's
 * hash: a free entry of the bucket, or else the one whose slot the hand
 * reaches first. Returns the entry's position for SLOT_WHERE, or
 * SLOT_NOT_INDEXED. */
static __always_inline __u32 index_add(struct table *t, __u64 h, __u32 idx)
{
	__u32 b = (__u32)h & t->bucket_mask;
	struct index_bucket *bucket = bpf_map_lookup_elem(t->index, &b);
	if (!bucket)
		return SLOT_NOT_INDEXED;
	__u32 want = index_entry(t, key_tag(h), idx);
#pragma clang loop unroll(disable)
	for (int i = 0; i < BUCKET_ENTRIES; i++) {
		__u32 *entry = &bucket->entry[i];
		__u32 was = *(volatile __u32 *)entry;
		if (!(was & t->slot_mask) && __sync_val_compare_and_swap(entry, was, want) == was)
			return b * BUCKET_ENTRIES + i;
	}
	/* A full bucket: the hand is read only now (chunks that other CPUs
	 * reserved after this one's hold keys newer than idx's neighbours). */
	__u64 hand = *(volatile __u64 *)&table_hands[t->id & (TABLE_COUNT - 1)] % t->slots;
	/* The nearest, chosen without a branch: the verifier would otherwise
	 * follow every combination of choices through the bucket. */
	__u64 victim = 0, victim_was = 0, nearest = 0xffffffff;
#pragma clang loop unroll(disable)
	for (__u64 i = 0; i < BUCKET_ENTRIES; i++) {
		__u64 was = *(volatile __u32 *)&bucket->entry[i];
		__u64 slot = (was & t->slot_mask) - 1;
		__u64 freed = -(slot >> 63); /* all ones if freed meanwhile */
		__u64 d = (slot & ~freed) - hand;
		d += t->slots & -(d >> 63); /* slots before the hand: a round later */
		d |= freed & 0xffffffff;    /* never nearer than the start */
		__u64 nearer = -((d - nearest) >> 63); /* all ones if d < nearest */
		nearest = (d & nearer) | (nearest & ~nearer);
		victim = (i & nearer) | (victim & ~nearer);
		victim_was = (was & nearer) | (victim_was & ~nearer);
	}
	if (nearest >= t->slots)
		return SLOT_NOT_INDEXED;
	__u32 v = victim & (BUCKET_ENTRIES - 1);
	if (__sync_val_compare_and_swap(&bucket->entry[v], (__u32)victim_was, want) != (__u32)victim_was)
		return SLOT_NOT_INDEXED;
	return b * BUCKET_ENTRIES + v;
}

enum claim {
	CLAIM_FAILED,  /* no slot could be taken: nothing stored */
	CLAIM_FOUND,   /* the key's slot */
	CLAIM_NEW,     /* a free slot: the caller writes the value and publishes */
	CLAIM_EVICTED, /* a slot that gave way: likewise */
	CLAIM_NONE,    /* nothing to store (a reset of no known exchange) */
};

/* Reserve the next chunk of the arena for this CPU. */
static __always_inline void chunk_reserve(struct table *t, struct table_chunk *c)
{
	__u32 chunk = chunk_slots[t->id & (TABLE_COUNT - 1)];
	__u64 start = __sync_fetch_and_add(&table_hands[t->id & (TABLE_COUNT - 1)], chunk);
	c->next = start % t->slots;
	c->end = c->next + chunk;
}

/* Take a slot for a new key: the next of this CPU's chunks that is free, or
 * that no packet used since the hand last passed (its key gives way). A
 * used slot keeps its key and loses its mark, so that it gives way the next
 * time round, unless a packet uses it again. When TAKE_SCAN slots in a row
 * were used or being written, the next gives way whatever its mark (unless
 * it is being written: then nothing is taken). The slot taken holds the
 * state SLOT_BUSY. */
static __always_inline int table_take(struct table *t, void **out, __u32 *at)
{
	__u32 zero = 0;
	struct table_chunks *chunks = bpf_map_lookup_elem(&cpu_chunks, &zero);
	*out = 0;
	if (!chunks)
		return CLAIM_FAILED;
	struct table_chunk *c = &chunks->table[t->id & (TABLE_COUNT - 1)];
	__u32 *slot = 0;
	__u32 idx = 0, state = SLOT_BUSY, where = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i <= TAKE_SCAN; i++) {
		if (c->next >= c->end)
			chunk_reserve(t, c);
		idx = c->next++;
		slot = bpf_map_lookup_elem(t->arena, &idx);
		if (!slot)
			return CLAIM_FAILED;
		state = *(volatile __u32 *)slot;
		where = SLOT_WHERE(slot);
		if (state == SLOT_EMPTY || i == TAKE_SCAN)
			break;
		if (state == SLOT_BUSY)
			continue;
		if (!(where & SLOT_REFERENCED))
			break;
		__sync_fetch_and_and(&SLOT_WHERE(slot), ~SLOT_REFERENCED);
	}
	if (!slot || state == SLOT_BUSY || __sync_val_compare_and_swap(slot, state, SLOT_BUSY) != state)
		return CLAIM_FAILED;
	*out = slot;
	*at = idx;
	if (state == SLOT_EMPTY)
		return CLAIM_NEW;
	index_forget(t, where, state, idx);
	return CLAIM_EVICTED;
}

/* Index a slot that table_take gave and whose key and value the caller
 * wrote, and make it visible to lookups and to userspace. An exchange is a
 * full barrier, so no CPU sees the tag before the key. */
static __always_inline void slot_publish(struct table *t, void *slot, __u64 h, __u32 idx)
{
	SLOT_WHERE(slot) = index_add(t, h, idx);
	__sync_lock_test_and_set((__u32 *)slot, key_tag(h));
}

/* A new slot for key, as table_take gives it, holding the key. *out is
 * NULL when none could be taken; else *at is the slot's index. */
static __always_inline int table_insert(struct table *t, const __u64 *key, int words, void **out, __u32 *at)
{
	int got = table_take(t, out, at);
	if (*out)
		__builtin_memcpy(SLOT_KEY(*out), key, words * 8);
	return got;
}

/* The slot of key: found (CLAIM_FOUND), or else a new one (table_insert). */
static __always_inline int table_get(struct table *t, const __u64 *key, int words, __u64 h, void **out, __u32 *at)
{
	*out = table_find(t, key, words, h, at);
	if (*out)
		return CLAIM_FOUND;
	return table_insert(t, key, words, out, at);
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

/* What a packet does to its exchange: add one to a counter, or one of the
 * updates that depend on the exchange's last packet. */
enum exchange_op_kind {
	OP_ATTEMPT,
	OP_ANSWER,
	OP_RESET,
	OP_ICMP_CLOSED,
	OP_ICMP_FILTERED,
	OP_ICMP_OTHER,
	OP_RETURN_BLOCKED,
	OP_FOLLOWUP,
	OP_SYN,		 /* an attempt, or a retransmit of the last SYN */
	OP_DHCP_REQUEST, /* an attempt with a transaction id */
	OP_DHCP_REPLY,	 /* an answer, if it has the last request's id */
};

struct exchange_op {
	struct exchange_key key;
	/* OP_SYN: the sequence number; OP_RESET: the acknowledgment number;
	 * OP_DHCP_*: the xid */
	__u32 seq;
	__u16 port; /* OP_SYN: the source port; OP_RESET: the destination port */
	__u16 kind; /* enum exchange_op_kind */
};

static __always_inline __u64 *bump_field(struct exchange_value *v, int what)
{
	switch (what) {
	case OP_ATTEMPT:
		return &v->attempts;
	case OP_ANSWER:
		return &v->answers;
	case OP_RESET:
		return &v->resets;
	case OP_ICMP_CLOSED:
		return &v->icmp_closed;
	case OP_ICMP_FILTERED:
		return &v->icmp_filtered;
	case OP_ICMP_OTHER:
		return &v->icmp_other;
	case OP_RETURN_BLOCKED:
		return &v->return_blocked;
	default:
		return &v->followups;
	}
}

/* A new exchange, holding its first packet's counts. */
static __always_inline void exchange_init(struct exchange_value *v, struct exchange_op *op, __u64 now)
{
	__builtin_memset(v, 0, sizeof(*v));
	v->first_seen = now;
	v->last_seen = now;
	switch (op->kind) {
	case OP_SYN:
		v->attempts = 1;
		v->last_port = op->port;
		v->last_seq = op->seq;
		break;
	case OP_DHCP_REQUEST:
		v->attempts = 1;
		v->last_seq = op->seq;
		break;
	case OP_DHCP_REPLY:
		/* An answer with no request seen still counts as an answer:
		 * nothing can pair it, and it shows the server is there. */
		v->answers = 1;
		break;
	default:
		*bump_field(v, op->kind) = 1;
	}
}

static __always_inline void exchange_apply(struct exchange_value *v, struct exchange_op *op, __u64 now)
{
	if (op->kind == OP_RESET) {
		/* A reset rejects the exchange only when it answers the last
		 * SYN: to that SYN's port, acknowledging its sequence number
		 * and any data it carried (TCP Fast Open). A reset of another
		 * connection (an old one the server forgot, beside the
		 * client's new attempt) says nothing of this one. */
		if (v->last_port == op->port && op->seq - v->last_seq - 1 <= SYN_DATA_MAX &&
		    (v->attempts | v->retransmits)) {
			v->last_seen = now;
			__sync_fetch_and_add(&v->resets, 1);
		}
		return;
	}
	v->last_seen = now;
	switch (op->kind) {
	case OP_SYN:
		/* A retransmit repeats the last SYN's port and sequence. */
		if (v->last_port == op->port && v->last_seq == op->seq && (v->attempts | v->retransmits)) {
			__sync_fetch_and_add(&v->retransmits, 1);
		} else {
			__sync_fetch_and_add(&v->attempts, 1);
			v->last_port = op->port;
			v->last_seq = op->seq;
		}
		break;
	case OP_DHCP_REQUEST:
		__sync_fetch_and_add(&v->attempts, 1);
		v->last_seq = op->seq;
		break;
	case OP_DHCP_REPLY:
		if (v->last_seq == op->seq)
			__sync_fetch_and_add(&v->answers, 1);
		break;
	default:
		__sync_fetch_and_add(bump_field(v, op->kind), 1);
	}
}

/*
 * The table operations are global functions: the verifier checks each once,
 * on its own, where an inlined copy would be checked again for every path
 * of the parser that reaches it (VLAN depths, IPv6 extension headers, ICMP
 * quotes), each with its probe loop: too many for its budget. A call costs a
 * few instructions. Each returns an enum claim.
 */

/* Apply op to its exchange, creating the exchange if needed; *at is set
 * to the exchange's slot unless this returns CLAIM_FAILED. */
static __always_inline int exchange_touch(struct exchange_op *op, __u32 *at)
{
	__u64 now = stamp();
	__u64 *key = (__u64 *)&op->key;
	__u64 h = key_hash(key, KEY_WORDS(op->key));
	struct table t = TABLE_OF(exchanges, TABLE_EXCHANGES);
	struct exchange_slot *slot = table_find(&t, key, KEY_WORDS(op->key), h, at);
	if (slot) {
		exchange_apply(&slot->value, op, now);
		return CLAIM_FOUND;
	}
	/* A reset answers a SYN that the exchange holds: none without it. */
	if (op->kind == OP_RESET)
		return CLAIM_NONE;
	int got = table_insert(&t, key, KEY_WORDS(op->key), (void **)&slot, at);
	if (!slot)
		return CLAIM_FAILED;
	exchange_init(&slot->value, op, now);
	slot_publish(&t, slot, h, *at);
	return got;
}

/* Apply op to its exchange (exchange_touch). Returns the enum claim in the
 * low byte, and above it the exchange's slot + 1 (0: none). */
__noinline __u64 exchange_update(struct exchange_op *op)
{
	if (!op)
		return CLAIM_FAILED;
	__u32 at = 0;
	int got = exchange_touch(op, &at);
	if (got == CLAIM_FAILED || got == CLAIM_NONE)
		return got;
	return ((__u64)at + 1) << 8 | got;
}

/* A TFTP-style request, remembered until its answer comes from the
 * server's new port. */
struct ephemeral_op {
	struct ephemeral_key key;
	__u32 exchange_slot; /* the request's exchange's slot + 1, or 0 */
	__u16 service;
	__u16 kind; /* for ephemeral_exchange: enum exchange_op_kind */
};

/* Remember a TFTP-style request, unless it already is; either way note
 * where its exchange is. */
__noinline int ephemeral_remember(struct ephemeral_op *op)
{
	if (!op)
		return CLAIM_FAILED;
	__u64 *key = (__u64 *)&op->key;
	__u64 h = key_hash(key, KEY_WORDS(op->key));
	struct table t = TABLE_OF(ephemeral, TABLE_EPHEMERAL);
	struct ephemeral_slot *slot;
	__u32 at = 0;
	int got = table_get(&t, key, KEY_WORDS(op->key), h, (void **)&slot, &at);
	if (!slot)
		return got;
	slot->value.exchange_slot = op->exchange_slot;
	slot->value.seen = stamp();
	if (got != CLAIM_FOUND) {
		slot->value.service = op->service;
		slot_publish(&t, slot, h, at);
	}
	return got;
}

/* A packet of a remembered TFTP-style exchange (op->key): an answer from
 * the server's new port, the client's packets back to it, an ICMP error
 * quoting an answer. Applies op->kind to the exchange and returns the
 * service in the low 16 bits and the enum claim above them; 0 when no such
 * request was remembered. The request's entry keeps where its exchange is,
 * so that the transfer's many packets need not hash the exchange's key. */
__noinline __u64 ephemeral_exchange(struct ephemeral_op *op)
{
	if (!op)
		return 0;
	__u64 *key = (__u64 *)&op->key;
	__u64 h = key_hash(key, KEY_WORDS(op->key));
	__u32 at;
	struct table et = TABLE_OF(ephemeral, TABLE_EPHEMERAL);
	struct ephemeral_slot *es = table_find(&et, key, KEY_WORDS(op->key), h, &at);
	if (!es)
		return 0;
	/* A store only when the tick moved, so that a transfer's packets do
	 * not all write the line. */
	__u64 now = stamp();
	if (es->value.seen != now)
		es->value.seen = now;
	__u16 service = es->value.service;
	struct exchange_op xop = {};
	__builtin_memcpy(xop.key.client, op->key.client, 16);
	__builtin_memcpy(xop.key.server, op->key.server, 16);
	xop.key.service = service;
	xop.key.kind = EXCHANGE_IP;
	xop.kind = op->kind;

	__u32 hint = es->value.exchange_slot;
	struct exchange_slot *xs = 0;
	if (hint) {
		__u32 idx = hint - 1;
		xs = bpf_map_lookup_elem(&exchanges, &idx);
	}
	int got;
	/* The hinted slot still holds the exchange unless it gave way to
	 * another key (or is giving way: then not published). */
	if (xs && *(volatile __u32 *)&xs->state > SLOT_BUSY &&
	    key_equal(SLOT_KEY(xs), (__u64 *)&xop.key, KEY_WORDS(xop.key))) {
		slot_touch(xs);
		exchange_apply(&xs->value, &xop, now);
		got = CLAIM_FOUND;
	} else {
		__u32 xat = 0;
		got = exchange_touch(&xop, &xat);
		if (got != CLAIM_FAILED)
			es->value.exchange_slot = xat + 1;
	}
	return (__u64)got << 16 | service;
}

struct unexpected_op {
	struct unexpected_key key;
	__u8 client[16]; /* the client answered */
};

/* Count an answer from a port in no catalog row. */
__noinline int unexpected_record(struct unexpected_op *op)
{
	if (!op)
		return CLAIM_FAILED;
	__u64 now = stamp();
	__u64 *key = (__u64 *)&op->key;
	__u64 h = key_hash(key, KEY_WORDS(op->key));
	struct table t = TABLE_OF(unexpected, TABLE_UNEXPECTED);
	struct unexpected_slot *slot;
	__u32 at = 0;
	int got = table_get(&t, key, KEY_WORDS(op->key), h, (void **)&slot, &at);
	if (!slot)
		return CLAIM_FAILED;
	if (got == CLAIM_FOUND) {
		slot->value.last_seen = now;
		__sync_fetch_and_add(&slot->value.answers, 1);
	} else {
		slot->value.first_seen = now;
		slot->value.last_seen = now;
		slot->value.answers = 1;
	}
	__builtin_memcpy(slot->value.client, op->client, 16);
	if (got != CLAIM_FOUND)
		slot_publish(&t, slot, h, at);
	return got;
}

/* A UDP datagram on no catalog port: its ends, the way it goes, and the
 * way an earlier datagram it answers would have gone. */
struct flow_op {
	struct flow_key key;
	__u32 way;    /* enum flow_way */
	__u32 answers; /* the way this datagram answers */
};

/* flow_note's result when the datagram answers one seen earlier. */
#define FLOW_ANSWER 8

/* Note a datagram between two ends: FLOW_ANSWER if a datagram the other
 * way was seen first (this one comes back from the port it was sent to),
 * else an enum claim: CLAIM_NEW or CLAIM_EVICTED when this way is new. */
__noinline int flow_note(struct flow_op *op)
{
	if (!op)
		return CLAIM_FAILED;
	__u64 *key = (__u64 *)&op->key;
	__u64 h = key_hash(key, KEY_WORDS(op->key));
	struct table t = TABLE_OF(udp_flows, TABLE_FLOWS);
	struct flow_slot *slot;
	__u32 at = 0;
	int got = table_get(&t, key, KEY_WORDS(op->key), h, (void **)&slot, &at);
	if (!slot)
		return CLAIM_FAILED;
	if (got != CLAIM_FOUND) {
		slot->value.seen = stamp();
		slot->value.ways = op->way;
		slot_publish(&t, slot, h, at);
		return got;
	}
	__u64 now = stamp();
	if (slot->value.seen != now)
		slot->value.seen = now;
	__u32 ways = *(volatile __u32 *)&slot->value.ways;
	if (ways & op->answers)
		return FLOW_ANSWER;
	if (ways & op->way)
		return CLAIM_FOUND;
	/* Still this pair's slot? Another CPU may have just given it to
	 * another pair, which must not inherit this way. */
	if (*(volatile __u32 *)slot != key_tag(h))
		return CLAIM_FAILED;
	if (__sync_fetch_and_or(&slot->value.ways, op->way) & op->way)
		return CLAIM_FOUND;
	return CLAIM_NEW;
}

/* Count the outcome of an insert: a new entry (new_counter), or none. */
static __always_inline void count_claim(struct pkt *p, int got, int new_counter)
{
	if (got == CLAIM_NEW || got == CLAIM_EVICTED)
		count(p, new_counter);
	else if (got == CLAIM_FAILED)
		count(p, PC_MAP_UPDATE_FAILED);
}

/* Apply op to its exchange and count what it made; returns the exchange's
 * slot + 1, or 0. */
static __always_inline __u32 exchange_record(struct pkt *p, struct exchange_op *op)
{
	__u64 r = exchange_update(op);
	count_claim(p, r & 0xff, PC_EXCHANGE_NEW);
	return r >> 8;
}

/* Apply what to the exchange of client with server. A TCP segment that
 * changes it also gives the port and the sequence number it concerns: a
 * SYN its source port and sequence number, a reset its destination port
 * and acknowledgment number. */
static __always_inline __u32 exchange_tcp(struct pkt *p, __u16 service, __u32 *client, __u32 *server, int what,
					  __u16 port, __u32 seq)
{
	struct exchange_op op = {};
	__builtin_memcpy(op.key.client, client, 16);
	__builtin_memcpy(op.key.server, server, 16);
	op.key.service = service;
	op.key.kind = EXCHANGE_IP;
	op.kind = what;
	op.port = port;
	op.seq = seq;
	return exchange_record(p, &op);
}

static __always_inline __u32 exchange_ip(struct pkt *p, __u16 service, __u32 *client, __u32 *server, int what)
{
	return exchange_tcp(p, service, client, server, what, 0, 0);
}

static __always_inline void record_unexpected(struct pkt *p, __u8 proto, __u32 *server, __u16 port, __u32 *client)
{
	struct unexpected_op op = {};
	__builtin_memcpy(op.key.server, server, 16);
	op.key.port = port;
	op.key.proto = proto;
	__builtin_memcpy(op.client, client, 16);
	count_claim(p, unexpected_record(&op), PC_UNEXPECTED_NEW);
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

	/* A reset without ACK answers no SYN: a SYN's answer acknowledges it. */
	if (syn && !ack)
		exchange_tcp(p, r.service, p->src, p->dst, OP_SYN, sport, bpf_ntohl(th->seq));
	else if (syn && ack)
		exchange_ip(p, r.service, p->dst, p->src, OP_ANSWER);
	else if (rst && ack && r.dir == DIR_REPLY)
		exchange_tcp(p, r.service, p->dst, p->src, OP_RESET, dport, bpf_ntohl(th->ack_seq));
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

	struct exchange_op op = {};
	__builtin_memcpy(op.key.client, b->chaddr, 6);
	op.key.service = service;
	op.key.kind = EXCHANGE_DHCP;
	op.kind = dir == DIR_REQUEST ? OP_DHCP_REQUEST : OP_DHCP_REPLY;
	op.seq = bpf_ntohl(b->xid);
	exchange_record(p, &op);
}

/* Apply what to the exchange of a remembered request of client (from
 * client_port) to a TFTP-style server. Returns its service, 0 if there is
 * no such request. */
static __always_inline __u16 ephemeral_bump(struct pkt *p, __u32 *client, __u32 *server, __u16 client_port, int what)
{
	struct ephemeral_op op = {};
	__builtin_memcpy(op.key.client, client, 16);
	__builtin_memcpy(op.key.server, server, 16);
	op.key.client_port = client_port;
	op.kind = what;
	__u64 r = ephemeral_exchange(&op);
	if (r)
		count_claim(p, r >> 16, PC_EXCHANGE_NEW);
	return r & 0xffff;
}

/* The order of two ends (address words, then port): -1, 0 or 1. Any
 * total order serves: it only makes one key of the two ways. */
static __always_inline int endpoint_order(__u32 *a, __u16 a_port, __u32 *b, __u16 b_port)
{
	for (int i = 0; i < 4; i++) {
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	}
	if (a_port != b_port)
		return a_port < b_port ? -1 : 1;
	return 0;
}

/* UDP on no catalog port: an answer from a TFTP-style server's new port, the
 * client's packets back to that port, or traffic that may show an
 * unexpected open port. */
static __always_inline void on_udp_other(struct pkt *p, struct udphdr *uh, __u16 sport, __u16 dport)
{
	__u16 service;
	if (ephemeral_ports[dport]) {
		service = ephemeral_bump(p, p->dst, p->src, dport, OP_ANSWER);
		if (service) {
			count_service(p, service, DIR_REPLY);
			return;
		}
	}
	if (ephemeral_ports[sport]) {
		service = ephemeral_bump(p, p->src, p->dst, sport, OP_FOLLOWUP);
		if (service) {
			count_service(p, service, DIR_NONE);
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
	__u8 *opcode = (void *)(uh + 1);
	if ((void *)(opcode + 2) <= p->data_end && opcode[0] == 0 && opcode[1] >= TFTP_DATA && opcode[1] <= TFTP_ERROR)
		return;

	struct flow_op op = {};
	int order = endpoint_order(p->src, sport, p->dst, dport);
	if (order <= 0) {
		__builtin_memcpy(op.key.lo, p->src, 16);
		__builtin_memcpy(op.key.hi, p->dst, 16);
		op.key.lo_port = sport;
		op.key.hi_port = dport;
		op.way = FLOW_LO_TO_HI;
		/* To itself, a datagram answers one the same way. */
		op.answers = order < 0 ? FLOW_HI_TO_LO : FLOW_LO_TO_HI;
	} else {
		__builtin_memcpy(op.key.lo, p->dst, 16);
		__builtin_memcpy(op.key.hi, p->src, 16);
		op.key.lo_port = dport;
		op.key.hi_port = sport;
		op.way = FLOW_HI_TO_LO;
		op.answers = FLOW_LO_TO_HI;
	}
	int got = flow_note(&op);
	if (got == FLOW_ANSWER) {
		/* It comes back from the port the client sent to. */
		record_unexpected(p, IPPROTO_UDP, p->src, sport, p->dst);
		return;
	}
	count_claim(p, got, PC_FLOW_NEW);
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
		exchange_ip(p, r.service, p->dst, p->src, OP_ANSWER);
		return;
	}
	__u32 exchange_slot = exchange_ip(p, r.service, p->src, p->dst, OP_ATTEMPT);
	if (r.flags & PORT_EPHEMERAL_REPLY) {
		/* Remember the request so that the answer from the server's new
		 * port can be matched; a repeated request finds it there. */
		struct ephemeral_op op = {};
		__builtin_memcpy(op.key.client, p->src, 16);
		__builtin_memcpy(op.key.server, p->dst, 16);
		op.key.client_port = sport;
		op.exchange_slot = exchange_slot;
		op.service = r.service;
		/* Before the entry exists, so that no answer can miss it; read
		 * first, so that repeated requests do not write a line other
		 * CPUs read. */
		if (!ephemeral_ports[sport])
			ephemeral_ports[sport] = 1;
		count_claim(p, ephemeral_remember(&op), PC_EPHEMERAL_NEW);
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
			exchange_ip(p, r.service, isrc, idst, OP_ICMP_CLOSED);
		} else if (cls == UNREACH_FILTERED) {
			if (sc)
				sc->icmp_filtered++;
			exchange_ip(p, r.service, isrc, idst, OP_ICMP_FILTERED);
		} else {
			if (sc)
				sc->icmp_other++;
			exchange_ip(p, r.service, isrc, idst, OP_ICMP_OTHER);
		}
		return;
	}
	if (r.dir == DIR_REPLY && !(r.flags & PORT_BROADCAST)) {
		/* (DHCP clients take their answers on raw sockets, so the
		 * kernel's port unreachable for an answer proves nothing.) */
		exchange_ip(p, r.service, idst, isrc, OP_RETURN_BLOCKED);
		return;
	}
	if (proto == IPPROTO_UDP && ephemeral_ports[idport]) {
		/* An answer from a TFTP-style server's new port, refused on its
		 * way back. */
		if (ephemeral_bump(p, idst, isrc, idport, OP_RETURN_BLOCKED))
			return;
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
