#ifndef XDPFLOW_CLIBXDP_SHIM_H
#define XDPFLOW_CLIBXDP_SHIM_H

/* AF_XDP sockets: libxdp's xsk API (it left libbpf in 1.0). The ring helpers are static
 * inline in xsk.h, so Swift calls them as they are, barriers included. */
#include <xdp/xsk.h>
#include <linux/if_xdp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

/* glibc's <bits/socket.h> has it; kept here should a libc leave it out. */
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#endif
