//! The thin layer over the kernel: netlink (links, addresses, routes, netns ids), sock_diag
//! (TCP sockets and their counters, listeners, closed-socket broadcasts), /proc and the
//! cgroup filesystem (processes, sockets, CPU time, host counters), network namespaces, and
//! per-cgroup packet counters in the kernel (cgroup_skb programs).
//! Nothing here knows about Docker or containers; callers pass pids and namespaces.

pub mod bpf;
pub mod cgskb;
pub mod hoststat;
pub mod listeners;
pub mod netlink;
pub mod netns;
pub mod procs;
pub mod sockdiag;
