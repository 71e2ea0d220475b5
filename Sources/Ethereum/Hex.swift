import BigInt

private let hexDigits = Array("0123456789abcdef".utf8)

@inline(__always)
private func nibble(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}

extension Array where Element == UInt8 {
    /// Parses hex with or without a `0x` prefix. Odd lengths and non-hex characters give nil; `""` and `"0x"` give `[]`.
    public init?(hex: String) {
        var utf8 = Substring(hex).utf8[...]
        if utf8.count >= 2, utf8.first == UInt8(ascii: "0"),
           utf8.dropFirst().first == UInt8(ascii: "x") || utf8.dropFirst().first == UInt8(ascii: "X") {
            utf8 = utf8.dropFirst(2)
        }
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var high: UInt8?
        for c in utf8 {
            guard let n = nibble(c) else { return nil }
            if let h = high {
                out.append(h << 4 | n)
                high = nil
            } else {
                high = n
            }
        }
        self = out
    }

    /// `"0x"` followed by lowercase hex.
    public var hex: String {
        var chars = [UInt8]()
        chars.reserveCapacity(2 + count * 2)
        chars.append(UInt8(ascii: "0"))
        chars.append(UInt8(ascii: "x"))
        for b in self {
            chars.append(hexDigits[Int(b >> 4)])
            chars.append(hexDigits[Int(b & 0x0f)])
        }
        return String(decoding: chars, as: UTF8.self)
    }
}

extension BigUInt {
    /// Big-endian bytes without leading zeros; zero is `[]` (the RLP and JSON-RPC quantity form).
    var minimalBytes: [UInt8] {
        var out = [UInt8]()
        for word in words.reversed() {
            for shift in stride(from: UInt.bitWidth - 8, through: 0, by: -8) {
                let byte = UInt8(truncatingIfNeeded: word >> UInt(shift))
                if out.isEmpty && byte == 0 { continue }
                out.append(byte)
            }
        }
        return out
    }

    /// Big-endian bytes left-padded to `width`; the value must fit.
    func bytes(width: Int) -> [UInt8] {
        let minimal = minimalBytes
        precondition(minimal.count <= width, "value does not fit in \(width) bytes")
        return [UInt8](repeating: 0, count: width - minimal.count) + minimal
    }

    init<C: Collection>(bigEndian bytes: C) where C.Element == UInt8 {
        var words = [UInt]()
        words.reserveCapacity(bytes.count / MemoryLayout<UInt>.size + 1)
        var word: UInt = 0
        var shift: UInt = 0
        for b in bytes.reversed() {
            word |= UInt(b) << shift
            shift += 8
            if shift == UInt(UInt.bitWidth) {
                words.append(word)
                word = 0
                shift = 0
            }
        }
        if shift > 0 { words.append(word) }
        self.init(words: words)
    }

    /// `0x`-prefixed quantity as JSON-RPC writes it ("0x0", "0x1a").
    var quantityHex: String {
        "0x" + String(self, radix: 16)
    }

    /// Parses a `0x`-prefixed hex quantity.
    init?(quantityHex text: String) {
        guard text.hasPrefix("0x") || text.hasPrefix("0X") else { return nil }
        let digits = text.dropFirst(2)
        guard !digits.isEmpty, digits.utf8.allSatisfy({ nibble($0) != nil }) else { return nil }
        self.init(digits, radix: 16)
    }
}
