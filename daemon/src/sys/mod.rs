//! The thin layer over the kernel: netlink (links, addresses, routes, netns ids), sock_diag
//! (TCP sockets and their counters, listeners, closed-socket broadcasts), /proc and the
//! cgroup filesystem (processes, sockets, CPU time, host counters), and network namespaces.
//! Nothing here knows about Docker or containers; callers pass pids and namespaces.

pub mod hoststat;
pub mod listeners;
pub mod netlink;
pub mod netns;
pub mod procs;
pub mod sockdiag;
