import Packets
import PropertyBased
import Testing

@Suite struct AddressTextTests {
    @Test(arguments: [
        ("aa:bb:cc:dd:ee:ff", 0xaabb_ccdd_eeff),
        ("AA:Bb:0c:D:e:F", 0xaabb_0c0d_0e0f),
        ("00:00:00:00:00:00", 0),
        ("ff:ff:ff:ff:ff:ff", 0xffff_ffff_ffff),
    ] as [(String, UInt64)])
    func macParses(text: String, raw: UInt64) {
        #expect(MACAddress(text)?.rawValue == raw)
    }

    @Test(arguments: ["", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa:bb:cc:dd:ee:fff", "aa:bb:cc:dd:ee:",
                      "aa-bb-cc-dd-ee-ff", "gg:bb:cc:dd:ee:ff", " aa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:+f",
                      "aabb.ccdd.eeff"])
    func macRejects(text: String) {
        #expect(MACAddress(text) == nil)
    }

    @Test func macPrintsLowercaseTwoDigits() {
        #expect(MACAddress(rawValue: 0x0a0b_0c0d_0e0f).description == "0a:0b:0c:0d:0e:0f")
    }

    @Test(arguments: [
        ("0.0.0.0", 0), ("255.255.255.255", 0xffff_ffff), ("192.0.2.1", 0xc000_0201), ("10.0.0.10", 0x0a00_000a),
    ] as [(String, UInt32)])
    func ipv4Parses(text: String, raw: UInt32) {
        #expect(IPv4Address(text)?.rawValue == raw)
        #expect(IPv4Address(text)?.description == text)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1.2.3.4 ", "1..3.4", "0x1.2.3.4",
                      "-1.2.3.4", "1.2.3.", "10"])
    func ipv4Rejects(text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test(arguments: [
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:0db8:0000:0001:0000:0000:0000:0001", "2001:db8:0:1::1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("::ffff:c000:201", "::ffff:192.0.2.1"),
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
        ("fe80::", "fe80::"),
    ])
    func ipv6ParsesAndPrintsRFC5952(text: String, canonical: String) {
        let address = IPv6Address(text)
        #expect(address?.description == canonical)
        #expect(address.flatMap { IPv6Address($0.description) } == address)
    }

    @Test(arguments: ["", ":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "g::",
                      "::1.2.3", "1.2.3.4::", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1:", ":1", "[::1]",
                      "::ffff:256.0.0.1"])
    func ipv6Rejects(text: String) {
        #expect(IPv6Address(text) == nil)
    }

    @Test func ipAddressChoosesFamilyByColon() {
        #expect(IPAddress("192.0.2.1") == .v4(IPv4Address(rawValue: 0xc000_0201)))
        #expect(IPAddress("::1") == .v6(IPv6Address(rawValue: 1)))
        #expect(IPAddress("nonsense") == nil)
    }

    @Test func everyAddressPrintsToTextThatParsesBack() async {
        let v6 = zip(Gen.uint64(), Gen.uint64(), Gen.int(in: 0 ... 8)).map { high, low, zeroGroups in
            // Zero some leading groups so that "::" runs of every length occur.
            let raw = UInt128(high) << 64 | UInt128(low)
            return IPv6Address(rawValue: zeroGroups == 8 ? 0 : raw >> (16 * zeroGroups))
        }
        await propertyCheck(count: 500, input: v6, Gen.uint32(), Gen.uint64()) { v6, v4, mac in
            #expect(IPv6Address(v6.description) == v6)
            #expect(IPv4Address(IPv4Address(rawValue: v4).description)?.rawValue == v4)
            let macAddress = MACAddress(rawValue: mac)
            #expect(MACAddress(macAddress.description) == macAddress)
        }
    }
}
