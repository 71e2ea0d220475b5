import BigInt
import Ethereum
import JobQueue

/// The key that pays, and how it signs a drafted transaction. No network, no database.
struct Wallet: Sendable {
    let key: PrivateKey
    let address: Address
    let chainId: UInt64

    init(key: PrivateKey, chainId: UInt64) {
        self.key = key
        self.address = key.address
        self.chainId = chainId
    }

    /// EIP-1559 when the draft has a tip, else legacy EIP-155.
    func sign(_ draft: TransactionDraft, nonce: UInt64) throws -> (hash: [UInt8], raw: [UInt8]) {
        let signed: SignedTransaction
        if let tip = draft.tip {
            signed = try EIP1559Transaction(chainId: chainId, nonce: nonce, maxPriorityFeePerGas: tip, maxFeePerGas: draft.gasPrice,
                                            gasLimit: draft.gasLimit, to: draft.to, value: draft.value, data: draft.data)
                .signed(with: key)
        } else {
            signed = try LegacyTransaction(nonce: nonce, gasPrice: draft.gasPrice, gasLimit: draft.gasLimit, to: draft.to,
                                           value: draft.value, data: draft.data, chainId: chainId)
                .signed(with: key)
        }
        return (signed.hash, signed.raw)
    }
}
