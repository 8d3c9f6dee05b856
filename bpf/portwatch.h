/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The data shared by the packet program and Go. bpf2go generates the Go side
 * of every struct and enum here (-type), so the layout is written once.
 *
 * Addresses are 16 bytes: IPv6 as is, IPv4 as an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d), so one key serves both families.
 */
#ifndef PORTWATCH_H
#define PORTWATCH_H

#include <linux/types.h>

/* Service ids index per-service arrays; 0 counts traffic on no catalog row. */
#define PW_MAX_SERVICES 1024

/* The port map is an array indexed by (protocol slot << 16) | port. */
enum proto_slot {
	SLOT_TCP = 0,
	SLOT_UDP = 1,
	SLOT_COUNT = 2,
};

enum port_flags {
	/* Answers come from a new server port (TFTP): remember each request's
	 * client address and port so the answer can be matched. */
	PORT_EPHEMERAL_REPLY = 1 << 0,
	/* DHCP/BOOTP: the BOOTP op code gives the direction, and exchanges
	 * pair by client hardware address and transaction id. */
	PORT_BROADCAST = 1 << 1,
	/* The client side of a broadcast service (bootpc): never a server port. */
	PORT_CLIENT_PORT = 1 << 2,
	/* rpcbind: copy its packets to userspace, which learns from them the
	 * dynamic ports (mountd) and puts them in this map. */
	PORT_PORTMAPPER = 1 << 3,
};

struct port_entry {
	__u16 service;	    /* row for clients from any source port; 0: none */
	__u16 priv_service; /* row for clients from ports 1-1023 */
	__u8 flags;	    /* enum port_flags */
	__u8 pad[3];
};

/* Per service, per CPU; summed in userspace. */
struct service_counters {
	__u64 packets;
	__u64 bytes;
	__u64 requests; /* packets toward the service port */
	__u64 replies;	/* packets from it (TFTP: from the server's new port) */
	__u64 syn;	/* SYN without ACK */
	__u64 syn_ack;
	__u64 rst;
	__u64 icmp_closed;   /* port unreachable quoting a request */
	__u64 icmp_filtered; /* administratively prohibited */
	__u64 icmp_other;    /* any other unreachable code */
};

enum exchange_kind {
	EXCHANGE_IP = 0,
	/* client holds the client's hardware address in its first 6 bytes and
	 * server is zero: DHCP requests are broadcast. */
	EXCHANGE_DHCP = 1,
};

/* The tables' keys are read, hashed and compared a word at a time: each is
 * a whole number of 8-byte words, aligned to 8. */
#define KEY_WORDS(type) (sizeof(type) / 8)

struct exchange_key {
	__u8 client[16];
	__u8 server[16];
	__u16 service;
	__u8 kind; /* enum exchange_kind */
	__u8 pad[5];
} __attribute__((aligned(8)));

/* Only packets that change an exchange's state touch it: SYN, SYN-ACK, RST,
 * UDP requests and answers, ICMP errors. Counters are cumulative. */
struct exchange_value {
	__u64 first_seen; /* a stamp: kernel ticks (stamp()), capture ns in the Go twin */
	__u64 last_seen;
	__u64 attempts;	   /* SYNs (not retransmits), UDP requests */
	__u64 retransmits; /* SYNs repeating the last one's port and sequence */
	__u64 answers;	   /* SYN-ACKs, UDP answers, DHCP answers to the xid */
	__u64 resets;	   /* RSTs from the server answering the last SYN */
	__u64 icmp_closed;
	__u64 icmp_filtered;
	__u64 icmp_other;
	__u64 return_blocked; /* ICMP errors quoting an answer */
	__u64 followups;      /* client packets to the server's new port (TFTP ACKs) */
	__u32 last_seq;	      /* TCP: the last SYN's sequence; DHCP: the last xid */
	__u16 last_port;      /* TCP: the last SYN's source port */
	__u16 pad;
};

/* A request to an ephemeral-reply service, waiting for its answer. */
struct ephemeral_key {
	__u8 client[16];
	__u8 server[16];
	__u16 client_port;
	__u8 pad[6];
} __attribute__((aligned(8)));

struct ephemeral_value {
	__u64 seen; /* a stamp: when the request or its transfer was last seen */
	/* The slot + 1 of the request's exchange (0: not known), so that the
	 * transfer's packets find it without hashing its key; checked
	 * against the key before use, since the slot may have gone to
	 * another exchange. */
	__u32 exchange_slot;
	__u16 service;
	__u16 pad;
};

/* A port in no catalog row that answered. */
struct unexpected_key {
	__u8 server[16];
	__u16 port;
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[5];
} __attribute__((aligned(8)));

struct unexpected_value {
	__u64 first_seen; /* stamps, as in exchange_value */
	__u64 last_seen;
	__u64 answers;
	__u8 client[16]; /* the last client answered */
};

/* UDP datagrams on no catalog port between two ends, remembered so that a
 * datagram coming back from the port one was sent to shows that port open.
 * One entry serves both ways: lo is the lower end (address words, then
 * port), and the value says which ways a datagram was seen. */
struct flow_key {
	__u8 lo[16];
	__u8 hi[16];
	__u16 lo_port;
	__u16 hi_port;
	__u8 pad[4];
} __attribute__((aligned(8)));

enum flow_way {
	FLOW_LO_TO_HI = 1,
	FLOW_HI_TO_LO = 2,
};

struct flow_value {
	__u64 seen; /* a stamp, as in exchange_value: when last seen */
	__u32 ways; /* enum flow_way bits */
	__u32 pad;
};

/*
 * The four tables share one design, chosen so that the first packet of a new
 * exchange does not wait for memory: a table is an arena of slots, filled in
 * order, and an index of buckets that finds a key's slot.
 *
 * The arena is an array that userspace maps into its memory and reads
 * without a system call. A CPU takes slots for new keys from a run of
 * consecutive slots it reserved (a chunk), so the lines a new key writes
 * follow the ones the last new key wrote, where a slot chosen by the key's
 * hash would be a random line of megabytes and cost a trip to memory.
 * Reserving a chunk moves the table's hand round the arena; a slot the hand
 * comes back to gives way to the new key (CLOCK), unless a packet used it
 * since the hand last passed: then it keeps its key for one more round. So
 * the keys that give way are ones no packet used for long, as in an LRU.
 * When TAKE_SCAN slots in a row were used or being written (the table
 * holds more live exchanges than it can), the next gives way anyway, so
 * that a new key finds room unless that one too is being written. A chunk
 * that a CPU left unfinished while the hand went once round may make up to
 * CHUNK_MAX newer keys give way early.
 *
 * The index is an array of buckets, a cache line each: BUCKET_ENTRIES
 * entries of 32 bits, the slot + 1 in the low bits (as many as the arena
 * needs) and bits of the key's tag above. A key's hash picks its bucket; a
 * lookup compares the tags of that one line and reads a slot only when its
 * tag matches. There are two entries per slot, so a bucket rarely fills;
 * when one does, its entry whose slot the hand reaches first gives way.
 * That slot stays in the arena, counted and read by userspace, but packets
 * no longer find it, and the key's next packet takes a new slot. Userspace
 * adds such copies of a key together, as it does the copies that two CPUs
 * make when they insert the same new key at once, and when one gives way
 * while another lives on, keeps its counts in the key's total.
 *
 * A slot's state says whether its key can be read: empty, claimed by a CPU
 * that is writing its key, or published (the key's tag: hash bits, never 0
 * or 1). Its where notes its index entry, so that the entry goes when the
 * slot gives way, and the bit SLOT_REFERENCED, set by the packets that use
 * the slot and cleared by the hand. A count racing with the slot's giving
 * way may land in the key that takes it; the hand takes slots that no
 * packet used for a round (unless the table is overfull), so this needs a
 * packet of an idle exchange to arrive during the few instructions of the
 * take.
 */
enum table_shape {
	/* Index entries per bucket: 4 bytes each, one cache line. */
	BUCKET_ENTRIES = 16,
	/* The most slots a CPU reserves at once; the loader may choose fewer. */
	CHUNK_MAX = 16,
	/* How many used slots in a row a new key passes by, at most, before
	 * the next gives way whatever its mark. */
	TAKE_SCAN = 64,
	/* Bits of where: the index entry (bucket * BUCKET_ENTRIES + entry),
	 * and whether a packet used the slot since the hand last passed. */
	SLOT_WHERE_MASK = 0x7fffffff,
	SLOT_NOT_INDEXED = 0x7fffffff,
	SLOT_REFERENCED = 0x80000000,
};

/* An index entry: bits of the key's tag above its slot + 1; a free entry
 * has no slot (its low bits are 0). */
struct index_bucket {
	__u32 entry[BUCKET_ENTRIES];
};

enum table_id {
	TABLE_EXCHANGES,
	TABLE_EPHEMERAL,
	TABLE_UNEXPECTED,
	TABLE_FLOWS,
	TABLE_COUNT,
};

/* A CPU's chunk of each table: the next slot it takes and the chunk's end. */
struct table_chunk {
	__u32 next;
	__u32 end;
};

struct table_chunks {
	struct table_chunk table[TABLE_COUNT];
};

enum slot_state {
	SLOT_EMPTY = 0,
	SLOT_BUSY = 1,
	/* any other value: published, the key's tag */
};

struct exchange_slot {
	__u32 state; /* enum slot_state, or the key's tag */
	__u32 where; /* the index entry, and SLOT_REFERENCED */
	struct exchange_key key;
	struct exchange_value value;
};

struct ephemeral_slot {
	__u32 state;
	__u32 where;
	struct ephemeral_key key;
	struct ephemeral_value value;
};

struct unexpected_slot {
	__u32 state;
	__u32 where;
	struct unexpected_key key;
	struct unexpected_value value;
};

struct flow_slot {
	__u32 state;
	__u32 where;
	struct flow_key key;
	struct flow_value value;
};

/* What the parser made of each packet; a packet may add to several. The
 * order is ParseCounter in parse.go. */
enum parse_counter {
	PC_PACKETS,
	PC_NON_IP,
	PC_VLAN,
	PC_QINQ,
	PC_VLAN_TOO_DEEP,
	PC_TRUNC_ETHERNET,
	PC_TRUNC_VLAN,
	PC_TRUNC_IPV4,
	PC_BAD_IPV4_HEADER,
	PC_IPV4_OPTIONS,
	PC_TRUNC_IPV6,
	PC_IPV6_EXT_HEADERS,
	PC_IPV6_EXT_TOO_DEEP,
	PC_TRUNC_IPV6_EXT,
	PC_FRAG_FIRST,
	PC_FRAG_LATER,
	PC_TRUNC_TCP,
	PC_BAD_TCP_HEADER,
	PC_TRUNC_UDP,
	PC_BAD_UDP_LENGTH,
	PC_TRUNC_ICMP,
	PC_ICMP_NOT_UNREACHABLE,
	PC_TRUNC_ICMP_INNER,
	PC_ICMP_UNMATCHED,
	PC_OTHER_L4,
	PC_TRUNC_DHCP,
	PC_NON_CATALOG,
	PC_EXCHANGE_NEW,
	PC_EPHEMERAL_NEW,
	PC_UNEXPECTED_NEW,
	PC_FLOW_NEW,
	PC_MAP_UPDATE_FAILED,
	PC_COUNT,
};

struct parse_counters {
	__u64 count[PC_COUNT];
};

/* Sent with a copy of a portmapper packet to userspace. */
struct learn_meta {
	__u32 frame_len; /* bytes of the frame that follow */
	__u32 pad;
};

/* Bounds of the parser's walks. */
#define VLAN_MAX_DEPTH 2
#define IPV6_EXT_MAX 6
/* The largest portmapper packet copied to userspace. */
#define LEARN_MAX_BYTES 1500

#endif /* PORTWATCH_H */
