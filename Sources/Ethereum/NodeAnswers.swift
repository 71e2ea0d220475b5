/// What a node's answer to `eth_sendRawTransaction` means for the sender. Nodes word these
/// differently; the wording is known here and nowhere else.
public enum SendVerdict: Sendable, Equatable {
    /// In the pool now, or already there (a re-broadcast of the same bytes).
    case accepted
    /// The nonce is used on chain: by this transaction (mined) or by another one.
    case nonceTooLow
    /// A transaction with the same nonce is in the pool and this one does not pay enough more.
    case underpriced(String)
    /// These bytes can never be mined: the wallet cannot pay value + gas, or the gas is beyond
    /// what a block holds. Only a different transaction can use the nonce.
    case refusedForGood(String)
    /// Any other refusal, with the node's message; it may pass later.
    case rejected(String)
}

extension JSONRPCError {
    /// The verdict on a raw transaction the node refused with this error.
    public var sendVerdict: SendVerdict {
        let text = message.lowercased()
        if text.contains("already known") || text.contains("known transaction") || text.contains("already imported") {
            return .accepted
        }
        if text.contains("nonce too low") { return .nonceTooLow }
        if text.contains("underpriced") { return .underpriced(message) }
        if text.contains("insufficient funds") || text.contains("exceeds block gas limit") || text.contains("intrinsic gas too low")
            || text.contains("gas limit reached") {
            return .refusedForGood(message)
        }
        return .rejected(message)
    }

    /// The node executed the call (`eth_call`, `eth_estimateGas`) and it reverted.
    public var isExecutionRevert: Bool { revertReason != nil || code == 3 }
}

extension EthereumClient {
    /// Sends signed bytes; a refusal is a verdict, a failure to reach the node throws.
    public func send(raw: [UInt8]) throws -> SendVerdict {
        do {
            _ = try sendRawTransaction(raw)
            return .accepted
        } catch EthereumClientError.rpc(let error) {
            return error.sendVerdict
        }
    }
}
