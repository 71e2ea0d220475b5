/// Keccak-256 as Ethereum uses it: the original Keccak padding (0x01 … 0x80), not SHA3-256's 0x06.
public func keccak256(_ bytes: [UInt8]) -> [UInt8] {
    var hasher = Keccak256()
    hasher.update(bytes)
    return hasher.finalize()
}

/// Keccak-256 of the string's UTF-8 bytes.
public func keccak256(_ string: String) -> [UInt8] {
    var hasher = Keccak256()
    var string = string
    string.withUTF8 { hasher.update(UnsafeRawBufferPointer($0)) }
    return hasher.finalize()
}

/// Incremental Keccak-256.
public struct Keccak256: Sendable {
    private static let rate = 136
    private var state = [UInt64](repeating: 0, count: 25)
    private var buffer = [UInt8](repeating: 0, count: 136)
    private var buffered = 0

    public init() {}

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ input: UnsafeRawBufferPointer) {
        guard input.count > 0 else { return }
        var offset = 0
        if buffered > 0 {
            let take = min(Self.rate - buffered, input.count)
            buffer.withUnsafeMutableBytes { dst in
                dst.baseAddress!.advanced(by: buffered).copyMemory(from: input.baseAddress!, byteCount: take)
            }
            buffered += take
            offset = take
            if buffered < Self.rate { return }
            buffer.withUnsafeBytes { absorb(UnsafeRawBufferPointer(rebasing: $0[0..<Self.rate])) }
            buffered = 0
        }
        while input.count - offset >= Self.rate {
            absorb(UnsafeRawBufferPointer(rebasing: input[offset..<offset + Self.rate]))
            offset += Self.rate
        }
        let rest = input.count - offset
        if rest > 0 {
            buffer.withUnsafeMutableBytes { dst in
                dst.baseAddress!.copyMemory(from: input.baseAddress!.advanced(by: offset), byteCount: rest)
            }
            buffered = rest
        }
    }

    public consuming func finalize() -> [UInt8] {
        for i in buffered..<Self.rate { buffer[i] = 0 }
        buffer[buffered] ^= 0x01
        buffer[Self.rate - 1] ^= 0x80
        buffer.withUnsafeBytes { absorb($0) }
        var out = [UInt8](repeating: 0, count: 32)
        for lane in 0..<4 {
            let value = state[lane]
            for j in 0..<8 { out[lane * 8 + j] = UInt8(truncatingIfNeeded: value >> UInt64(8 * j)) }
        }
        return out
    }

    private mutating func absorb(_ block: UnsafeRawBufferPointer) {
        state.withUnsafeMutableBufferPointer { s in
            for i in 0..<(Self.rate / 8) {
                s[i] ^= UInt64(littleEndian: block.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
            }
            keccakF1600(s.baseAddress!)
        }
    }
}

private let roundConstants: [UInt64] = [
    0x0000_0000_0000_0001, 0x0000_0000_0000_8082, 0x8000_0000_0000_808A, 0x8000_0000_8000_8000,
    0x0000_0000_0000_808B, 0x0000_0000_8000_0001, 0x8000_0000_8000_8081, 0x8000_0000_0000_8009,
    0x0000_0000_0000_008A, 0x0000_0000_0000_0088, 0x0000_0000_8000_8009, 0x0000_0000_8000_000A,
    0x0000_0000_8000_808B, 0x8000_0000_0000_008B, 0x8000_0000_0000_8089, 0x8000_0000_0000_8003,
    0x8000_0000_0000_8002, 0x8000_0000_0000_0080, 0x0000_0000_0000_800A, 0x8000_0000_8000_000A,
    0x8000_0000_8000_8081, 0x8000_0000_0000_8080, 0x0000_0000_8000_0001, 0x8000_0000_8000_8008,
]

@inline(__always)
private func rotl(_ x: UInt64, _ n: UInt64) -> UInt64 {
    (x << n) | (x >> (64 &- n))
}

/// The permutation on 25 lanes (index x + 5y), with all lanes held in locals so the optimizer
/// keeps them in registers.
private func keccakF1600(_ a: UnsafeMutablePointer<UInt64>) {
    var a00 = a[0], a01 = a[1], a02 = a[2], a03 = a[3], a04 = a[4]
    var a05 = a[5], a06 = a[6], a07 = a[7], a08 = a[8], a09 = a[9]
    var a10 = a[10], a11 = a[11], a12 = a[12], a13 = a[13], a14 = a[14]
    var a15 = a[15], a16 = a[16], a17 = a[17], a18 = a[18], a19 = a[19]
    var a20 = a[20], a21 = a[21], a22 = a[22], a23 = a[23], a24 = a[24]

    for round in 0..<24 {
        // θ
        let c0 = a00 ^ a05 ^ a10 ^ a15 ^ a20
        let c1 = a01 ^ a06 ^ a11 ^ a16 ^ a21
        let c2 = a02 ^ a07 ^ a12 ^ a17 ^ a22
        let c3 = a03 ^ a08 ^ a13 ^ a18 ^ a23
        let c4 = a04 ^ a09 ^ a14 ^ a19 ^ a24
        let d0 = c4 ^ rotl(c1, 1)
        let d1 = c0 ^ rotl(c2, 1)
        let d2 = c1 ^ rotl(c3, 1)
        let d3 = c2 ^ rotl(c4, 1)
        let d4 = c3 ^ rotl(c0, 1)

        // ρ and π: b[y, 2x+3y] = rot(a[x, y] ^ d[x], r[x, y])
        let b00 = a00 ^ d0
        let b10 = rotl(a01 ^ d1, 1)
        let b20 = rotl(a02 ^ d2, 62)
        let b05 = rotl(a03 ^ d3, 28)
        let b15 = rotl(a04 ^ d4, 27)
        let b16 = rotl(a05 ^ d0, 36)
        let b01 = rotl(a06 ^ d1, 44)
        let b11 = rotl(a07 ^ d2, 6)
        let b21 = rotl(a08 ^ d3, 55)
        let b06 = rotl(a09 ^ d4, 20)
        let b07 = rotl(a10 ^ d0, 3)
        let b17 = rotl(a11 ^ d1, 10)
        let b02 = rotl(a12 ^ d2, 43)
        let b12 = rotl(a13 ^ d3, 25)
        let b22 = rotl(a14 ^ d4, 39)
        let b23 = rotl(a15 ^ d0, 41)
        let b08 = rotl(a16 ^ d1, 45)
        let b18 = rotl(a17 ^ d2, 15)
        let b03 = rotl(a18 ^ d3, 21)
        let b13 = rotl(a19 ^ d4, 8)
        let b14 = rotl(a20 ^ d0, 18)
        let b24 = rotl(a21 ^ d1, 2)
        let b09 = rotl(a22 ^ d2, 61)
        let b19 = rotl(a23 ^ d3, 56)
        let b04 = rotl(a24 ^ d4, 14)

        // χ
        a00 = b00 ^ (~b01 & b02); a01 = b01 ^ (~b02 & b03); a02 = b02 ^ (~b03 & b04)
        a03 = b03 ^ (~b04 & b00); a04 = b04 ^ (~b00 & b01)
        a05 = b05 ^ (~b06 & b07); a06 = b06 ^ (~b07 & b08); a07 = b07 ^ (~b08 & b09)
        a08 = b08 ^ (~b09 & b05); a09 = b09 ^ (~b05 & b06)
        a10 = b10 ^ (~b11 & b12); a11 = b11 ^ (~b12 & b13); a12 = b12 ^ (~b13 & b14)
        a13 = b13 ^ (~b14 & b10); a14 = b14 ^ (~b10 & b11)
        a15 = b15 ^ (~b16 & b17); a16 = b16 ^ (~b17 & b18); a17 = b17 ^ (~b18 & b19)
        a18 = b18 ^ (~b19 & b15); a19 = b19 ^ (~b15 & b16)
        a20 = b20 ^ (~b21 & b22); a21 = b21 ^ (~b22 & b23); a22 = b22 ^ (~b23 & b24)
        a23 = b23 ^ (~b24 & b20); a24 = b24 ^ (~b20 & b21)

        // ι
        a00 ^= roundConstants[round]
    }

    a[0] = a00; a[1] = a01; a[2] = a02; a[3] = a03; a[4] = a04
    a[5] = a05; a[6] = a06; a[7] = a07; a[8] = a08; a[9] = a09
    a[10] = a10; a[11] = a11; a[12] = a12; a[13] = a13; a[14] = a14
    a[15] = a15; a[16] = a16; a[17] = a17; a[18] = a18; a[19] = a19
    a[20] = a20; a[21] = a21; a[22] = a22; a[23] = a23; a[24] = a24
}
