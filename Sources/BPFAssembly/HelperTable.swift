// The kernel's helper functions, numbered as in include/uapi/linux/bpf.h
// (__BPF_FUNC_MAPPER). The kernel never renumbers a helper, so this table only grows.

extension Helper {
    public static let mapLookupElem = Helper(rawValue: 1)
    public static let mapUpdateElem = Helper(rawValue: 2)
    public static let mapDeleteElem = Helper(rawValue: 3)
    public static let probeRead = Helper(rawValue: 4)
    public static let ktimeGetNs = Helper(rawValue: 5)
    public static let tracePrintk = Helper(rawValue: 6)
    public static let getPrandomU32 = Helper(rawValue: 7)
    public static let getSmpProcessorId = Helper(rawValue: 8)
    public static let skbStoreBytes = Helper(rawValue: 9)
    public static let l3CsumReplace = Helper(rawValue: 10)
    public static let l4CsumReplace = Helper(rawValue: 11)
    public static let tailCall = Helper(rawValue: 12)
    public static let cloneRedirect = Helper(rawValue: 13)
    public static let getCurrentPidTgid = Helper(rawValue: 14)
    public static let getCurrentUidGid = Helper(rawValue: 15)
    public static let getCurrentComm = Helper(rawValue: 16)
    public static let getCgroupClassid = Helper(rawValue: 17)
    public static let skbVlanPush = Helper(rawValue: 18)
    public static let skbVlanPop = Helper(rawValue: 19)
    public static let skbGetTunnelKey = Helper(rawValue: 20)
    public static let skbSetTunnelKey = Helper(rawValue: 21)
    public static let perfEventRead = Helper(rawValue: 22)
    public static let redirect = Helper(rawValue: 23)
    public static let getRouteRealm = Helper(rawValue: 24)
    public static let perfEventOutput = Helper(rawValue: 25)
    public static let skbLoadBytes = Helper(rawValue: 26)
    public static let getStackid = Helper(rawValue: 27)
    public static let csumDiff = Helper(rawValue: 28)
    public static let skbGetTunnelOpt = Helper(rawValue: 29)
    public static let skbSetTunnelOpt = Helper(rawValue: 30)
    public static let skbChangeProto = Helper(rawValue: 31)
    public static let skbChangeType = Helper(rawValue: 32)
    public static let skbUnderCgroup = Helper(rawValue: 33)
    public static let getHashRecalc = Helper(rawValue: 34)
    public static let getCurrentTask = Helper(rawValue: 35)
    public static let probeWriteUser = Helper(rawValue: 36)
    public static let currentTaskUnderCgroup = Helper(rawValue: 37)
    public static let skbChangeTail = Helper(rawValue: 38)
    public static let skbPullData = Helper(rawValue: 39)
    public static let csumUpdate = Helper(rawValue: 40)
    public static let setHashInvalid = Helper(rawValue: 41)
    public static let getNumaNodeId = Helper(rawValue: 42)
    public static let skbChangeHead = Helper(rawValue: 43)
    public static let xdpAdjustHead = Helper(rawValue: 44)
    public static let probeReadStr = Helper(rawValue: 45)
    public static let getSocketCookie = Helper(rawValue: 46)
    public static let getSocketUid = Helper(rawValue: 47)
    public static let setHash = Helper(rawValue: 48)
    public static let setsockopt = Helper(rawValue: 49)
    public static let skbAdjustRoom = Helper(rawValue: 50)
    public static let redirectMap = Helper(rawValue: 51)
    public static let skRedirectMap = Helper(rawValue: 52)
    public static let sockMapUpdate = Helper(rawValue: 53)
    public static let xdpAdjustMeta = Helper(rawValue: 54)
    public static let perfEventReadValue = Helper(rawValue: 55)
    public static let perfProgReadValue = Helper(rawValue: 56)
    public static let getsockopt = Helper(rawValue: 57)
    public static let overrideReturn = Helper(rawValue: 58)
    public static let sockOpsCbFlagsSet = Helper(rawValue: 59)
    public static let msgRedirectMap = Helper(rawValue: 60)
    public static let msgApplyBytes = Helper(rawValue: 61)
    public static let msgCorkBytes = Helper(rawValue: 62)
    public static let msgPullData = Helper(rawValue: 63)
    public static let bind = Helper(rawValue: 64)
    public static let xdpAdjustTail = Helper(rawValue: 65)
    public static let skbGetXfrmState = Helper(rawValue: 66)
    public static let getStack = Helper(rawValue: 67)
    public static let skbLoadBytesRelative = Helper(rawValue: 68)
    public static let fibLookup = Helper(rawValue: 69)
    public static let sockHashUpdate = Helper(rawValue: 70)
    public static let msgRedirectHash = Helper(rawValue: 71)
    public static let skRedirectHash = Helper(rawValue: 72)
    public static let lwtPushEncap = Helper(rawValue: 73)
    public static let lwtSeg6StoreBytes = Helper(rawValue: 74)
    public static let lwtSeg6AdjustSrh = Helper(rawValue: 75)
    public static let lwtSeg6Action = Helper(rawValue: 76)
    public static let rcRepeat = Helper(rawValue: 77)
    public static let rcKeydown = Helper(rawValue: 78)
    public static let skbCgroupId = Helper(rawValue: 79)
    public static let getCurrentCgroupId = Helper(rawValue: 80)
    public static let getLocalStorage = Helper(rawValue: 81)
    public static let skSelectReuseport = Helper(rawValue: 82)
    public static let skbAncestorCgroupId = Helper(rawValue: 83)
    public static let skLookupTcp = Helper(rawValue: 84)
    public static let skLookupUdp = Helper(rawValue: 85)
    public static let skRelease = Helper(rawValue: 86)
    public static let mapPushElem = Helper(rawValue: 87)
    public static let mapPopElem = Helper(rawValue: 88)
    public static let mapPeekElem = Helper(rawValue: 89)
    public static let msgPushData = Helper(rawValue: 90)
    public static let msgPopData = Helper(rawValue: 91)
    public static let rcPointerRel = Helper(rawValue: 92)
    public static let spinLock = Helper(rawValue: 93)
    public static let spinUnlock = Helper(rawValue: 94)
    public static let skFullsock = Helper(rawValue: 95)
    public static let tcpSock = Helper(rawValue: 96)
    public static let skbEcnSetCe = Helper(rawValue: 97)
    public static let getListenerSock = Helper(rawValue: 98)
    public static let skcLookupTcp = Helper(rawValue: 99)
    public static let tcpCheckSyncookie = Helper(rawValue: 100)
    public static let sysctlGetName = Helper(rawValue: 101)
    public static let sysctlGetCurrentValue = Helper(rawValue: 102)
    public static let sysctlGetNewValue = Helper(rawValue: 103)
    public static let sysctlSetNewValue = Helper(rawValue: 104)
    public static let strtol = Helper(rawValue: 105)
    public static let strtoul = Helper(rawValue: 106)
    public static let skStorageGet = Helper(rawValue: 107)
    public static let skStorageDelete = Helper(rawValue: 108)
    public static let sendSignal = Helper(rawValue: 109)
    public static let tcpGenSyncookie = Helper(rawValue: 110)
    public static let skbOutput = Helper(rawValue: 111)
    public static let probeReadUser = Helper(rawValue: 112)
    public static let probeReadKernel = Helper(rawValue: 113)
    public static let probeReadUserStr = Helper(rawValue: 114)
    public static let probeReadKernelStr = Helper(rawValue: 115)
    public static let tcpSendAck = Helper(rawValue: 116)
    public static let sendSignalThread = Helper(rawValue: 117)
    public static let jiffies64 = Helper(rawValue: 118)
    public static let readBranchRecords = Helper(rawValue: 119)
    public static let getNsCurrentPidTgid = Helper(rawValue: 120)
    public static let xdpOutput = Helper(rawValue: 121)
    public static let getNetnsCookie = Helper(rawValue: 122)
    public static let getCurrentAncestorCgroupId = Helper(rawValue: 123)
    public static let skAssign = Helper(rawValue: 124)
    public static let ktimeGetBootNs = Helper(rawValue: 125)
    public static let seqPrintf = Helper(rawValue: 126)
    public static let seqWrite = Helper(rawValue: 127)
    public static let skCgroupId = Helper(rawValue: 128)
    public static let skAncestorCgroupId = Helper(rawValue: 129)
    public static let ringbufOutput = Helper(rawValue: 130)
    public static let ringbufReserve = Helper(rawValue: 131)
    public static let ringbufSubmit = Helper(rawValue: 132)
    public static let ringbufDiscard = Helper(rawValue: 133)
    public static let ringbufQuery = Helper(rawValue: 134)
    public static let csumLevel = Helper(rawValue: 135)
    public static let skcToTcp6Sock = Helper(rawValue: 136)
    public static let skcToTcpSock = Helper(rawValue: 137)
    public static let skcToTcpTimewaitSock = Helper(rawValue: 138)
    public static let skcToTcpRequestSock = Helper(rawValue: 139)
    public static let skcToUdp6Sock = Helper(rawValue: 140)
    public static let getTaskStack = Helper(rawValue: 141)
    public static let loadHdrOpt = Helper(rawValue: 142)
    public static let storeHdrOpt = Helper(rawValue: 143)
    public static let reserveHdrOpt = Helper(rawValue: 144)
    public static let inodeStorageGet = Helper(rawValue: 145)
    public static let inodeStorageDelete = Helper(rawValue: 146)
    public static let dPath = Helper(rawValue: 147)
    public static let copyFromUser = Helper(rawValue: 148)
    public static let snprintfBtf = Helper(rawValue: 149)
    public static let seqPrintfBtf = Helper(rawValue: 150)
    public static let skbCgroupClassid = Helper(rawValue: 151)
    public static let redirectNeigh = Helper(rawValue: 152)
    public static let perCpuPtr = Helper(rawValue: 153)
    public static let thisCpuPtr = Helper(rawValue: 154)
    public static let redirectPeer = Helper(rawValue: 155)
    public static let taskStorageGet = Helper(rawValue: 156)
    public static let taskStorageDelete = Helper(rawValue: 157)
    public static let getCurrentTaskBtf = Helper(rawValue: 158)
    public static let bprmOptsSet = Helper(rawValue: 159)
    public static let ktimeGetCoarseNs = Helper(rawValue: 160)
    public static let imaInodeHash = Helper(rawValue: 161)
    public static let sockFromFile = Helper(rawValue: 162)
    public static let checkMtu = Helper(rawValue: 163)
    public static let forEachMapElem = Helper(rawValue: 164)
    public static let snprintf = Helper(rawValue: 165)
    public static let sysBpf = Helper(rawValue: 166)
    public static let btfFindByNameKind = Helper(rawValue: 167)
    public static let sysClose = Helper(rawValue: 168)
    public static let timerInit = Helper(rawValue: 169)
    public static let timerSetCallback = Helper(rawValue: 170)
    public static let timerStart = Helper(rawValue: 171)
    public static let timerCancel = Helper(rawValue: 172)
    public static let getFuncIp = Helper(rawValue: 173)
    public static let getAttachCookie = Helper(rawValue: 174)
    public static let taskPtRegs = Helper(rawValue: 175)
    public static let getBranchSnapshot = Helper(rawValue: 176)
    public static let traceVprintk = Helper(rawValue: 177)
    public static let skcToUnixSock = Helper(rawValue: 178)
    public static let kallsymsLookupName = Helper(rawValue: 179)
    public static let findVma = Helper(rawValue: 180)
    public static let loop = Helper(rawValue: 181)
    public static let strncmp = Helper(rawValue: 182)
    public static let getFuncArg = Helper(rawValue: 183)
    public static let getFuncRet = Helper(rawValue: 184)
    public static let getFuncArgCnt = Helper(rawValue: 185)
    public static let getRetval = Helper(rawValue: 186)
    public static let setRetval = Helper(rawValue: 187)
    public static let xdpGetBuffLen = Helper(rawValue: 188)
    public static let xdpLoadBytes = Helper(rawValue: 189)
    public static let xdpStoreBytes = Helper(rawValue: 190)
    public static let copyFromUserTask = Helper(rawValue: 191)
    public static let skbSetTstamp = Helper(rawValue: 192)
    public static let imaFileHash = Helper(rawValue: 193)
    public static let kptrXchg = Helper(rawValue: 194)
    public static let mapLookupPercpuElem = Helper(rawValue: 195)
    public static let skcToMptcpSock = Helper(rawValue: 196)
    public static let dynptrFromMem = Helper(rawValue: 197)
    public static let ringbufReserveDynptr = Helper(rawValue: 198)
    public static let ringbufSubmitDynptr = Helper(rawValue: 199)
    public static let ringbufDiscardDynptr = Helper(rawValue: 200)
    public static let dynptrRead = Helper(rawValue: 201)
    public static let dynptrWrite = Helper(rawValue: 202)
    public static let dynptrData = Helper(rawValue: 203)
    public static let tcpRawGenSyncookieIpv4 = Helper(rawValue: 204)
    public static let tcpRawGenSyncookieIpv6 = Helper(rawValue: 205)
    public static let tcpRawCheckSyncookieIpv4 = Helper(rawValue: 206)
    public static let tcpRawCheckSyncookieIpv6 = Helper(rawValue: 207)
    public static let ktimeGetTaiNs = Helper(rawValue: 208)
    public static let userRingbufDrain = Helper(rawValue: 209)
    public static let cgrpStorageGet = Helper(rawValue: 210)
    public static let cgrpStorageDelete = Helper(rawValue: 211)

    /// Names without the `bpf_` prefix, indexed by number.
    static let names: [String] = [
        "unspec", "map_lookup_elem", "map_update_elem", "map_delete_elem",
        "probe_read", "ktime_get_ns", "trace_printk", "get_prandom_u32",
        "get_smp_processor_id", "skb_store_bytes", "l3_csum_replace", "l4_csum_replace",
        "tail_call", "clone_redirect", "get_current_pid_tgid", "get_current_uid_gid",
        "get_current_comm", "get_cgroup_classid", "skb_vlan_push", "skb_vlan_pop",
        "skb_get_tunnel_key", "skb_set_tunnel_key", "perf_event_read", "redirect",
        "get_route_realm", "perf_event_output", "skb_load_bytes", "get_stackid",
        "csum_diff", "skb_get_tunnel_opt", "skb_set_tunnel_opt", "skb_change_proto",
        "skb_change_type", "skb_under_cgroup", "get_hash_recalc", "get_current_task",
        "probe_write_user", "current_task_under_cgroup", "skb_change_tail", "skb_pull_data",
        "csum_update", "set_hash_invalid", "get_numa_node_id", "skb_change_head",
        "xdp_adjust_head", "probe_read_str", "get_socket_cookie", "get_socket_uid",
        "set_hash", "setsockopt", "skb_adjust_room", "redirect_map",
        "sk_redirect_map", "sock_map_update", "xdp_adjust_meta", "perf_event_read_value",
        "perf_prog_read_value", "getsockopt", "override_return", "sock_ops_cb_flags_set",
        "msg_redirect_map", "msg_apply_bytes", "msg_cork_bytes", "msg_pull_data",
        "bind", "xdp_adjust_tail", "skb_get_xfrm_state", "get_stack",
        "skb_load_bytes_relative", "fib_lookup", "sock_hash_update", "msg_redirect_hash",
        "sk_redirect_hash", "lwt_push_encap", "lwt_seg6_store_bytes", "lwt_seg6_adjust_srh",
        "lwt_seg6_action", "rc_repeat", "rc_keydown", "skb_cgroup_id",
        "get_current_cgroup_id", "get_local_storage", "sk_select_reuseport", "skb_ancestor_cgroup_id",
        "sk_lookup_tcp", "sk_lookup_udp", "sk_release", "map_push_elem",
        "map_pop_elem", "map_peek_elem", "msg_push_data", "msg_pop_data",
        "rc_pointer_rel", "spin_lock", "spin_unlock", "sk_fullsock",
        "tcp_sock", "skb_ecn_set_ce", "get_listener_sock", "skc_lookup_tcp",
        "tcp_check_syncookie", "sysctl_get_name", "sysctl_get_current_value", "sysctl_get_new_value",
        "sysctl_set_new_value", "strtol", "strtoul", "sk_storage_get",
        "sk_storage_delete", "send_signal", "tcp_gen_syncookie", "skb_output",
        "probe_read_user", "probe_read_kernel", "probe_read_user_str", "probe_read_kernel_str",
        "tcp_send_ack", "send_signal_thread", "jiffies64", "read_branch_records",
        "get_ns_current_pid_tgid", "xdp_output", "get_netns_cookie", "get_current_ancestor_cgroup_id",
        "sk_assign", "ktime_get_boot_ns", "seq_printf", "seq_write",
        "sk_cgroup_id", "sk_ancestor_cgroup_id", "ringbuf_output", "ringbuf_reserve",
        "ringbuf_submit", "ringbuf_discard", "ringbuf_query", "csum_level",
        "skc_to_tcp6_sock", "skc_to_tcp_sock", "skc_to_tcp_timewait_sock", "skc_to_tcp_request_sock",
        "skc_to_udp6_sock", "get_task_stack", "load_hdr_opt", "store_hdr_opt",
        "reserve_hdr_opt", "inode_storage_get", "inode_storage_delete", "d_path",
        "copy_from_user", "snprintf_btf", "seq_printf_btf", "skb_cgroup_classid",
        "redirect_neigh", "per_cpu_ptr", "this_cpu_ptr", "redirect_peer",
        "task_storage_get", "task_storage_delete", "get_current_task_btf", "bprm_opts_set",
        "ktime_get_coarse_ns", "ima_inode_hash", "sock_from_file", "check_mtu",
        "for_each_map_elem", "snprintf", "sys_bpf", "btf_find_by_name_kind",
        "sys_close", "timer_init", "timer_set_callback", "timer_start",
        "timer_cancel", "get_func_ip", "get_attach_cookie", "task_pt_regs",
        "get_branch_snapshot", "trace_vprintk", "skc_to_unix_sock", "kallsyms_lookup_name",
        "find_vma", "loop", "strncmp", "get_func_arg",
        "get_func_ret", "get_func_arg_cnt", "get_retval", "set_retval",
        "xdp_get_buff_len", "xdp_load_bytes", "xdp_store_bytes", "copy_from_user_task",
        "skb_set_tstamp", "ima_file_hash", "kptr_xchg", "map_lookup_percpu_elem",
        "skc_to_mptcp_sock", "dynptr_from_mem", "ringbuf_reserve_dynptr", "ringbuf_submit_dynptr",
        "ringbuf_discard_dynptr", "dynptr_read", "dynptr_write", "dynptr_data",
        "tcp_raw_gen_syncookie_ipv4", "tcp_raw_gen_syncookie_ipv6", "tcp_raw_check_syncookie_ipv4", "tcp_raw_check_syncookie_ipv6",
        "ktime_get_tai_ns", "user_ringbuf_drain", "cgrp_storage_get", "cgrp_storage_delete",
    ]
}
