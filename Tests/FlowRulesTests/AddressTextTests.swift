import Glibc
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

    /// Text that is nearly an address (a printed one with characters replaced, dropped
    /// or doubled) reads as inet_pton(3) reads it, or not at all where it refuses it.
    @Test func addressesReadAsInetPtonReadsThem() async {
        let printed = zip(Gen.uint64(), Gen.uint64(), Gen.int(in: 0 ... 8), Gen.uint32()).map { high, low, zeroGroups, v4 in
            let raw = UInt128(high) << 64 | UInt128(low)
            let v6: String = IPv6Address(rawValue: zeroGroups == 8 ? 0 : raw >> (16 * zeroGroups)).description
            let quad: String = IPv4Address(rawValue: v4).description
            let mixed: String = String(v6.prefix { $0 != ":" }) + "::" + quad
            return [v6, quad, mixed, "::ffff:" + quad][Int(low % 4)]
        }
        let alphabet: [String] = "0123456789abcdefABCDEFg:.:.".map { String($0) }
        let edits = Gen.int(in: 0 ... alphabet.count - 1).map { alphabet[$0] }.array(of: 3)
        await propertyCheck(count: 3000, input: printed, edits, Gen.int(in: 0 ... 40), Gen.int(in: 0 ... 3)) { text, edits, at, kind in
            var characters: [String] = text.map { String($0) }
            let place = min(at, characters.count)
            switch kind {
            case 0 where place < characters.count: characters[place] = edits[0]
            case 1 where place < characters.count: characters.remove(at: place)
            case 2: characters.insert(contentsOf: edits, at: place)
            default: break
            }
            let edited = characters.joined()
            var v6 = in6_addr(), v4 = in_addr()
            let expected6 = inet_pton(AF_INET6, edited, &v6) == 1
                ? withUnsafeBytes(of: v6) { $0.reduce(UInt128(0)) { $0 << 8 | UInt128($1) } } : nil
            let expected4 = inet_pton(AF_INET, edited, &v4) == 1 ? UInt32(bigEndian: v4.s_addr) : nil
            #expect(IPv6Address(edited)?.rawValue == expected6, "\(edited)")
            #expect(IPv4Address(edited)?.rawValue == expected4, "\(edited)")
        }
    }
}
