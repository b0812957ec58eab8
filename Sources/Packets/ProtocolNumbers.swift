/// EtherTypes and VLAN TPIDs the dissector and the builder know by name.
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let rarp: UInt16 = 0x8035
    /// 802.1Q tag.
    public static let vlan: UInt16 = 0x8100
    /// 802.1ad (QinQ service) tag.
    public static let qinq: UInt16 = 0x88a8
    public static let ipv6: UInt16 = 0x86dd
}

/// IP protocol numbers (IPv4 protocol, IPv6 next header) the dissector and the builder
/// know by name.
public enum IPProtocolNumber {
    public static let hopByHop: UInt8 = 0
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let routing: UInt8 = 43
    public static let fragment: UInt8 = 44
    public static let esp: UInt8 = 50
    public static let ah: UInt8 = 51
    public static let icmpv6: UInt8 = 58
    public static let noNextHeader: UInt8 = 59
    public static let destinationOptions: UInt8 = 60
    public static let sctp: UInt8 = 132
}
