/// What a node's answer to `eth_sendRawTransaction` means for the sender. Nodes word these
/// differently; the wording is known here and nowhere else.
public enum SendVerdict: Sendable, Equatable {
    /// In the pool now, or already there (a re-broadcast of the same bytes).
    case accepted
    /// The nonce is used on chain: by this transaction (mined) or by another one.
    case nonceTooLow
    /// Any other refusal, with the node's message.
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
