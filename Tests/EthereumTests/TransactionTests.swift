import BigInt
import Ethereum
import Foundation
import Testing

struct TransactionFixture: Decodable {
    let type: Int
    let private_key: String
    let from: String
    let chain_id: String
    let nonce: String
    let gas_limit: String
    let to: String?
    let value: String
    let data: String
    let gas_price: String?
    let max_priority_fee_per_gas: String?
    let max_fee_per_gas: String?
    let raw: String
    let hash: String
    let r: String
    let s: String
    let v: String

    func build() throws -> (legacy: LegacyTransaction?, eip1559: EIP1559Transaction?) {
        let to = try self.to.map { hex -> Address in
            guard let a = Address(hex: hex) else { throw FixtureError("bad to \(hex)") }
            return a
        }
        let chainId = UInt64(try big(chain_id)), nonce = UInt64(try big(self.nonce))
        let gasLimit = UInt64(try big(gas_limit))
        if type == 0 {
            return (LegacyTransaction(nonce: nonce, gasPrice: try big(gas_price ?? ""), gasLimit: gasLimit, to: to,
                                      value: try big(value), data: try bytes(data), chainId: chainId), nil)
        }
        return (nil, EIP1559Transaction(chainId: chainId, nonce: nonce,
                                        maxPriorityFeePerGas: try big(max_priority_fee_per_gas ?? ""),
                                        maxFeePerGas: try big(max_fee_per_gas ?? ""), gasLimit: gasLimit, to: to,
                                        value: try big(value), data: try bytes(data)))
    }
}

@Suite struct TransactionTests {
    @Test func fixtureTransactionsAreByteIdentical() throws {
        let fixtures = try Fixtures.load("transactions.json", as: [TransactionFixture].self)
        #expect(fixtures.count >= 50)
        // The set covers what the issue asks for.
        #expect(fixtures.contains { $0.type == 0 } && fixtures.contains { $0.type == 2 })
        #expect(Set(fixtures.map(\.chain_id)).isSuperset(of: ["1", "10000", "31337", "18446744073709551615"]))
        #expect(fixtures.contains { $0.to == nil && $0.type == 0 } && fixtures.contains { $0.to == nil && $0.type == 2 })
        #expect(fixtures.contains { $0.value == "0" })
        #expect(fixtures.contains { $0.value.count > 70 })
        #expect(fixtures.contains { $0.data == "0x" } && fixtures.contains { $0.data.count > 20000 })

        for f in fixtures {
            let key = try PrivateKey(hex: f.private_key)
            #expect(key.address.checksummed == f.from)
            let built = try f.build()
            let signed = try built.legacy?.signed(with: key) ?? built.eip1559!.signed(with: key)
            #expect(signed.raw.hex == f.raw, "type \(f.type) chain \(f.chain_id) nonce \(f.nonce)")
            #expect(signed.hash.hex == f.hash, "type \(f.type) chain \(f.chain_id) nonce \(f.nonce)")
            #expect(keccak256(signed.raw) == signed.hash)
        }
    }

    @Test func fixtureTransactionsDecodeBack() throws {
        let fixtures = try Fixtures.load("transactions.json", as: [TransactionFixture].self)
        for f in fixtures {
            let raw = try bytes(f.raw)
            let decoded = try DecodedTransaction.decode(raw)
            let built = try f.build()
            switch decoded {
            case .legacy(let tx, let sig):
                #expect(tx == built.legacy)
                let v = BigUInt(sig.v) + BigUInt(tx.chainId) * 2 + 35
                #expect(v.description == f.v)
            case .eip1559(let tx, let sig):
                #expect(tx == built.eip1559)
                #expect(String(sig.v) == f.v)
            }
            #expect(decoded.signature.r.hex == f.r)
            #expect(decoded.signature.s.hex == f.s)
            #expect(decoded.signature.isLowS)
            #expect(try decoded.sender().checksummed == f.from)
        }
    }

    @Test func legacyVUsesEIP155() throws {
        let key = try PrivateKey(hex: "0x" + String(repeating: "0", count: 63) + "1")
        let tx = LegacyTransaction(nonce: 0, gasPrice: 10, gasLimit: 5_000_000, to: Address.zero, chainId: 10000)
        let signed = try tx.signed(with: key)
        guard case .legacy(_, let sig) = try DecodedTransaction.decode(signed.raw) else {
            Issue.record("not a legacy transaction")
            return
        }
        let fields = try RLP.decode(signed.raw).listValue ?? []
        #expect(fields.count == 9)
        #expect(try fields[6].uintValue() == BigUInt(sig.v) + 20035)
        #expect(try fields[6].uintValue() != 27 && fields[6].uintValue() != 28)
    }

    @Test func typeTwoLayout() throws {
        let key = try PrivateKey(hex: "0x" + String(repeating: "0", count: 63) + "1")
        let tx = EIP1559Transaction(chainId: 31337, nonce: 3, maxPriorityFeePerGas: 1, maxFeePerGas: 2_000_000_000,
                                    gasLimit: 21000, to: nil, value: 0, data: [0x60, 0x00])
        let signed = try tx.signed(with: key)
        #expect(signed.raw.first == 0x02)
        let fields = try RLP.decode(Array(signed.raw.dropFirst())).listValue ?? []
        #expect(fields.count == 12)
        #expect(fields[5] == .bytes([]))  // contract creation
        #expect(fields[8] == .list([]))   // empty access list
        #expect(try fields[9].uintValue() <= 1)
        #expect(try DecodedTransaction.decode(signed.raw).sender() == key.address)
    }

    @Test func malformedRawTransactionsAreRejected() throws {
        #expect(throws: TransactionError.self) { try DecodedTransaction.decode([]) }
        #expect(throws: TransactionError.unsupportedType(1)) { try DecodedTransaction.decode([0x01, 0xc0]) }
        #expect(throws: TransactionError.self) { try DecodedTransaction.decode(RLP.list([]).encoded()) }
        // A pre-EIP-155 legacy transaction (v = 27) is not something we read back.
        let preEIP155 = RLP.list([.uint(0), .uint(1), .uint(21000), .bytes([]), .uint(0),
                                  .bytes([]), .uint(27), .uint(1), .uint(1)]).encoded()
        #expect(throws: TransactionError.self) { try DecodedTransaction.decode(preEIP155) }
    }
}
