/// In-place edits of an Ethernet frame, as tc's `vlan` and `pedit`/`skbmod` actions
/// leave the bytes on the wire.
///
/// A VLAN tag counts as complete when its TPID, TCI and the EtherType after it are
/// present (18 bytes for the outermost tag), as the kernel's `struct vlan_hdr` reads
/// it and as `skb_vlan_pop` requires (`VLAN_ETH_HLEN`). The dissector uses the same rule.
extension Array where Element == UInt8 {
    /// Inserts `tag` as the new outermost VLAN tag right after the MAC addresses, as
    /// tc's vlan push does. False (frame unchanged) when the frame is shorter than 14 bytes.
    /// The DEI bit of the new tag is 0.
    public mutating func pushVLAN(_ tag: VLANTag) -> Bool {
        guard count >= EthernetLayout.headerLength else { return false }
        let tci = tag.tci(dei: false)
        insert(contentsOf: [
            UInt8(truncatingIfNeeded: tag.tpid >> 8), UInt8(truncatingIfNeeded: tag.tpid),
            UInt8(truncatingIfNeeded: tci >> 8), UInt8(truncatingIfNeeded: tci),
        ], at: EthernetLayout.typeOffset)
        return true
    }

    /// Removes the outermost VLAN tag (TPID 0x8100 or 0x88a8). False when there is none
    /// or the tag is truncated.
    public mutating func popVLAN() -> Bool {
        guard hasCompleteOuterVLAN else { return false }
        removeSubrange(EthernetLayout.typeOffset ..< EthernetLayout.typeOffset + VLANLayout.tagLength)
        return true
    }

    /// Rewrites the outermost tag's TPID, priority and id in place (tc's vlan modify).
    /// False when there is no complete outermost tag. The existing DEI bit is kept.
    public mutating func modifyVLAN(_ tag: VLANTag) -> Bool {
        guard hasCompleteOuterVLAN else { return false }
        let tpidOffset = EthernetLayout.typeOffset
        let tciOffset = tpidOffset + 2
        let dei = self[tciOffset] & 0x10 != 0
        let tci = tag.tci(dei: dei)
        self[tpidOffset] = UInt8(truncatingIfNeeded: tag.tpid >> 8)
        self[tpidOffset + 1] = UInt8(truncatingIfNeeded: tag.tpid)
        self[tciOffset] = UInt8(truncatingIfNeeded: tci >> 8)
        self[tciOffset + 1] = UInt8(truncatingIfNeeded: tci)
        return true
    }

    /// False (frame unchanged) when the frame is shorter than 6 bytes.
    public mutating func setDestinationMAC(_ mac: MACAddress) -> Bool {
        writeMAC(mac, at: 0)
    }

    /// False (frame unchanged) when the frame is shorter than 12 bytes.
    public mutating func setSourceMAC(_ mac: MACAddress) -> Bool {
        writeMAC(mac, at: 6)
    }

    private var hasCompleteOuterVLAN: Bool {
        guard count >= EthernetLayout.headerLength + VLANLayout.tagLength else { return false }
        let tpid = UInt16(self[EthernetLayout.typeOffset]) << 8 | UInt16(self[EthernetLayout.typeOffset + 1])
        return VLANLayout.tpids.contains(tpid)
    }

    private mutating func writeMAC(_ mac: MACAddress, at offset: Int) -> Bool {
        guard count >= offset + 6 else { return false }
        for i in 0 ..< 6 {
            self[offset + i] = UInt8(truncatingIfNeeded: mac.rawValue >> (40 - 8 * UInt64(i)))
        }
        return true
    }
}

enum EthernetLayout {
    /// Destination MAC, source MAC, EtherType.
    static let headerLength = 14
    static let typeOffset = 12
}

enum VLANLayout {
    /// TPID and TCI; the EtherType that follows belongs to the next header.
    static let tagLength = 4
    /// 802.1Q and 802.1ad, in either position of a stack.
    static let tpids: Set<UInt16> = [EtherType.vlan, EtherType.qinq]
}

extension VLANTag {
    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    func tci(dei: Bool) -> UInt16 {
        UInt16(priority & 0x7) << 13 | (dei ? 0x1000 : 0) | id & 0x0fff
    }

    init(tpid: UInt16, tci: UInt16) {
        self.init(tpid: tpid, priority: UInt8(tci >> 13), id: tci & 0x0fff)
    }
}
