#ifndef XDPFLOW_CLIBBPF_SHIM_H
#define XDPFLOW_CLIBBPF_SHIM_H

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/genetlink.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/socket.h>

/* glibc >= 2.32; declared here because <string.h> hides it without _GNU_SOURCE. */
extern const char *strerrorname_np(int errnum);

static inline int xdpflow_errno(void) { return errno; }

/* setns(2) and CLONE_NEWNET, which <sched.h> hides without _GNU_SOURCE. */
extern int setns(int fd, int nstype);
#define XDPFLOW_CLONE_NEWNET 0x40000000

#endif
