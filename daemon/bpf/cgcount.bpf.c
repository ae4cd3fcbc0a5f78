// SPDX-License-Identifier: GPL-2.0
// netmoded's per-cgroup traffic counters: one cgroup_skb program for ingress and one for
// egress, attached once at the cgroup-v2 root (multi-attach: other programs keep working).
// Every packet of every socket is counted under the cgroup id of the socket's owner, by
// direction and by peer class, and for a container of this gateway by its address (so that
// whom a container talks to is known for UDP too). Reads only stable `__sk_buff` fields and the packet's IP
// header (no BTF, no CO-RE): one object for every architecture. Built by `daemon/bpf/build`;
// the object beside this file is what netmoded embeds, and a test rebuilds it and compares.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Peer classes: what the packet's other end is.
#define PEER_LOOPBACK 0 // 127.0.0.0/8 or ::1
#define PEER_LOCAL 1    // an address in `local_peers` (a container of this gateway)
#define PEER_OTHER 2    // anything else

struct key {
    __u64 cgroup; // the socket owner's cgroup-v2 id (the group directory's inode)
    __u32 dir;    // 0 ingress, 1 egress
    __u32 peer;   // PEER_*
    __u32 addr;   // PEER_LOCAL: the peer's IPv4 address (network byte order); else 0
    __u32 pad;    // 0 (the key has no hole: its bytes are all set)
};

struct counts {
    __u64 bytes;   // IP packets: IP header, transport header and payload, per segment
    __u64 packets; // GSO/GRO segments counted one by one
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct key);
    __type(value, struct counts);
} counters SEC(".maps");

// IPv4 addresses (network byte order) of this gateway's containers, kept by netmoded.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u8);
} local_peers SEC(".maps");

// The peer class of the packet; for PEER_LOCAL its address is stored in `local`.
static __always_inline __u32 peer_class(struct __sk_buff *skb, __u32 dir, __u32 *local)
{
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        __u32 addr = 0;
        // The packet starts at its IP header: saddr at 12, daddr at 16.
        if (bpf_skb_load_bytes(skb, dir ? 16 : 12, &addr, sizeof(addr)) < 0)
            return PEER_OTHER;
        if ((bpf_ntohl(addr) >> 24) == 127)
            return PEER_LOOPBACK;
        if (bpf_map_lookup_elem(&local_peers, &addr)) {
            *local = addr;
            return PEER_LOCAL;
        }
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        __u32 addr[4] = {};
        // saddr at 8, daddr at 24.
        if (bpf_skb_load_bytes(skb, dir ? 24 : 8, addr, sizeof(addr)) < 0)
            return PEER_OTHER;
        if (addr[0] == 0 && addr[1] == 0 && addr[2] == 0 && addr[3] == bpf_htonl(1))
            return PEER_LOOPBACK;
    }
    return PEER_OTHER;
}

// The length of the IP and transport headers of the packet's first segment: what each further
// segment of a GSO/GRO packet carries again on the wire. 0 when it cannot be read.
static __always_inline __u32 header_len(struct __sk_buff *skb)
{
    __u8 b = 0;
    __u32 ip, proto;
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        if (bpf_skb_load_bytes(skb, 0, &b, 1) < 0)
            return 0;
        ip = (b & 0xf) * 4;
        if (bpf_skb_load_bytes(skb, 9, &b, 1) < 0)
            return ip;
        proto = b;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        ip = 40; // extension headers are not followed
        if (bpf_skb_load_bytes(skb, 6, &b, 1) < 0)
            return ip;
        proto = b;
    } else {
        return 0;
    }
    if (proto == IPPROTO_TCP) {
        if (bpf_skb_load_bytes(skb, ip + 12, &b, 1) < 0)
            return ip;
        return ip + (b >> 4) * 4;
    }
    if (proto == IPPROTO_UDP)
        return ip + 8;
    return ip;
}

static __always_inline int count(struct __sk_buff *skb, __u32 dir)
{
    struct key k = {
        .cgroup = bpf_skb_cgroup_id(skb),
        .dir = dir,
    };
    k.peer = peer_class(skb, dir, &k.addr);
    __u64 segs = skb->gso_segs ? skb->gso_segs : 1;
    // A GSO/GRO packet is counted as its segments are on the wire: each with its headers.
    __u64 bytes = skb->len;
    if (segs > 1)
        bytes += (segs - 1) * header_len(skb);
    struct counts *c = bpf_map_lookup_elem(&counters, &k);
    if (c) {
        c->bytes += bytes;
        c->packets += segs;
    } else {
        struct counts n = { .bytes = bytes, .packets = segs };
        bpf_map_update_elem(&counters, &k, &n, BPF_NOEXIST);
    }
    return 1; // count, never drop
}

SEC("cgroup_skb/ingress")
int netmode_ingress(struct __sk_buff *skb) { return count(skb, 0); }

SEC("cgroup_skb/egress")
int netmode_egress(struct __sk_buff *skb) { return count(skb, 1); }

char _license[] SEC("license") = "GPL";
