import BigInt

/// A type-0 transaction signed with EIP-155 replay protection (v = recovery id + chainId·2 + 35).
public struct LegacyTransaction: Sendable, Equatable {
    public var nonce: UInt64
    public var gasPrice: BigUInt
    public var gasLimit: UInt64
    /// nil creates a contract.
    public var to: Address?
    public var value: BigUInt
    public var data: [UInt8]
    public var chainId: UInt64

    public init(nonce: UInt64, gasPrice: BigUInt, gasLimit: UInt64, to: Address?, value: BigUInt = 0,
                data: [UInt8] = [], chainId: UInt64) {
        self.nonce = nonce
        self.gasPrice = gasPrice
        self.gasLimit = gasLimit
        self.to = to
        self.value = value
        self.data = data
        self.chainId = chainId
    }

    private var fields: [RLP] {
        [.uint(nonce), .uint(gasPrice), .uint(gasLimit), .bytes(to?.bytes ?? []), .uint(value), .bytes(data)]
    }

    /// keccak256(rlp([nonce, gasPrice, gasLimit, to, value, data, chainId, 0, 0])).
    public var signingHash: [UInt8] {
        keccak256(RLP.list(fields + [.uint(chainId), .bytes([]), .bytes([])]).encoded())
    }

    public func signed(with key: PrivateKey) throws -> SignedTransaction {
        let signature = try key.sign(hash: signingHash)
        return SignedTransaction(raw: encoded(signature: signature))
    }

    /// rlp([nonce, gasPrice, gasLimit, to, value, data, v, r, s]).
    public func encoded(signature: Signature) -> [UInt8] {
        let v = BigUInt(signature.v) + BigUInt(chainId) * 2 + 35
        return RLP.list(fields + [.uint(v), .uint(BigUInt(bigEndian: signature.r)), .uint(BigUInt(bigEndian: signature.s))])
            .encoded()
    }
}

/// A type-2 (EIP-1559) transaction with an empty access list.
public struct EIP1559Transaction: Sendable, Equatable {
    public var chainId: UInt64
    public var nonce: UInt64
    public var maxPriorityFeePerGas: BigUInt
    public var maxFeePerGas: BigUInt
    public var gasLimit: UInt64
    /// nil creates a contract.
    public var to: Address?
    public var value: BigUInt
    public var data: [UInt8]

    public init(chainId: UInt64, nonce: UInt64, maxPriorityFeePerGas: BigUInt, maxFeePerGas: BigUInt,
                gasLimit: UInt64, to: Address?, value: BigUInt = 0, data: [UInt8] = []) {
        self.chainId = chainId
        self.nonce = nonce
        self.maxPriorityFeePerGas = maxPriorityFeePerGas
        self.maxFeePerGas = maxFeePerGas
        self.gasLimit = gasLimit
        self.to = to
        self.value = value
        self.data = data
    }

    private var fields: [RLP] {
        [.uint(chainId), .uint(nonce), .uint(maxPriorityFeePerGas), .uint(maxFeePerGas), .uint(gasLimit),
         .bytes(to?.bytes ?? []), .uint(value), .bytes(data), .list([])]
    }

    /// keccak256(0x02 ‖ rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gasLimit, to, value, data, []])).
    public var signingHash: [UInt8] {
        keccak256([0x02] + RLP.list(fields).encoded())
    }

    public func signed(with key: PrivateKey) throws -> SignedTransaction {
        let signature = try key.sign(hash: signingHash)
        return SignedTransaction(raw: encoded(signature: signature))
    }

    /// 0x02 ‖ rlp([…, accessList, yParity, r, s]).
    public func encoded(signature: Signature) -> [UInt8] {
        [0x02] + RLP.list(fields + [.uint(UInt64(signature.v)), .uint(BigUInt(bigEndian: signature.r)),
                                    .uint(BigUInt(bigEndian: signature.s))]).encoded()
    }
}

public struct SignedTransaction: Sendable, Equatable {
    /// What `eth_sendRawTransaction` takes.
    public let raw: [UInt8]
    /// keccak256(raw): the transaction hash nodes report.
    public let hash: [UInt8]

    public init(raw: [UInt8]) {
        self.raw = raw
        self.hash = keccak256(raw)
    }
}

public enum TransactionError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformed(String)
    case unsupportedType(UInt8)

    public var description: String {
        switch self {
        case .malformed(let why): return "malformed transaction: \(why)"
        case .unsupportedType(let t): return "unsupported transaction type \(t)"
        }
    }
}

/// A raw transaction read back (for checking what we signed, and in tests).
public enum DecodedTransaction: Sendable, Equatable {
    case legacy(LegacyTransaction, Signature)
    case eip1559(EIP1559Transaction, Signature)

    /// Accepts EIP-155 legacy and type-2 transactions with an empty access list.
    public static func decode(_ raw: [UInt8]) throws -> DecodedTransaction {
        guard let first = raw.first else { throw TransactionError.malformed("empty") }
        if first >= 0xc0 {
            guard let f = try RLP.decode(raw).listValue, f.count == 9 else {
                throw TransactionError.malformed("legacy transaction must be a list of 9 items")
            }
            let v = try f[6].uintValue()
            guard v >= 35 else { throw TransactionError.malformed("not EIP-155 (v = \(v))") }
            let chainId = (v - 35) / 2
            guard chainId.bitWidth <= 64 else { throw TransactionError.malformed("chain id too large") }
            let tx = LegacyTransaction(
                nonce: try f[0].uint64Value(), gasPrice: try f[1].uintValue(), gasLimit: try f[2].uint64Value(),
                to: try address(f[3]), value: try f[4].uintValue(), data: try bytes(f[5]), chainId: UInt64(chainId))
            let sig = try signature(r: f[7], s: f[8], v: UInt8((v - 35) % 2))
            return .legacy(tx, sig)
        }
        guard first == 0x02 else { throw TransactionError.unsupportedType(first) }
        guard let f = try RLP.decode(Array(raw.dropFirst())).listValue, f.count == 12 else {
            throw TransactionError.malformed("type-2 transaction must be a list of 12 items")
        }
        guard f[8] == .list([]) else { throw TransactionError.malformed("non-empty access list") }
        let parity = try f[9].uintValue()
        guard parity <= 1 else { throw TransactionError.malformed("y parity \(parity)") }
        let tx = EIP1559Transaction(
            chainId: try f[0].uint64Value(), nonce: try f[1].uint64Value(),
            maxPriorityFeePerGas: try f[2].uintValue(), maxFeePerGas: try f[3].uintValue(),
            gasLimit: try f[4].uint64Value(), to: try address(f[5]), value: try f[6].uintValue(), data: try bytes(f[7]))
        return .eip1559(tx, try signature(r: f[10], s: f[11], v: UInt8(parity)))
    }

    public var signature: Signature {
        switch self {
        case .legacy(_, let s), .eip1559(_, let s): return s
        }
    }

    public var signingHash: [UInt8] {
        switch self {
        case .legacy(let tx, _): return tx.signingHash
        case .eip1559(let tx, _): return tx.signingHash
        }
    }

    /// The address that signed the transaction.
    public func sender() throws -> Address {
        try signature.recoverAddress(hash: signingHash)
    }

    private static func bytes(_ item: RLP) throws -> [UInt8] {
        guard let b = item.bytesValue else { throw TransactionError.malformed("expected a byte string") }
        return b
    }

    private static func address(_ item: RLP) throws -> Address? {
        let b = try bytes(item)
        if b.isEmpty { return nil }
        guard b.count == 20 else { throw TransactionError.malformed("'to' must be 20 bytes or empty") }
        return Address(bytes: b)
    }

    private static func signature(r: RLP, s: RLP, v: UInt8) throws -> Signature {
        let rv = try r.uintValue(), sv = try s.uintValue()
        guard rv.bitWidth <= 256, sv.bitWidth <= 256 else { throw TransactionError.malformed("r or s too large") }
        return try Signature(r: rv.bytes(width: 32), s: sv.bytes(width: 32), v: v)
    }
}
