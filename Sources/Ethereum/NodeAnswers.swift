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
    /// Ethermint: the nonce is ahead of the account's next one (`expected`), which it does not
    /// queue as geth does: the transactions of the nonces between must reach the node first.
    case nonceGap(expected: UInt64, message: String)
    /// Any other refusal, with the node's message; it may pass later.
    case rejected(String)
}

extension JSONRPCError {
    /// The verdict on a raw transaction the node refused with this error. Both geth's wording and
    /// Ethermint's (the era-D chain ran on an Ethermint/Cosmos-SDK node) are known:
    /// - geth: "nonce too low", "already known", "replacement transaction underpriced",
    ///   "insufficient funds for gas * price + value";
    /// - Ethermint: "invalid nonce; got N, expected M" (any mismatch: too low, or a gap), "tx already
    ///   in mempool" (Cosmos SDK code 19; CometBFT says "tx already exists in cache"),
    ///   "insufficient fee; got: … required: …", "sender balance < tx cost (…): insufficient funds".
    public var sendVerdict: SendVerdict {
        let text = message.lowercased()
        if text.contains("already known") || text.contains("known transaction") || text.contains("already imported")
            || text.contains("already in mempool") || text.contains("already exists in cache") {
            return .accepted
        }
        if text.contains("nonce too low") { return .nonceTooLow }
        if let (got, expected) = Self.ethermintNonce(text) {
            // Ethermint checks nonce == the account's next sequence (counting its mempool): a
            // lower one is used (mined or pending), a higher one is a gap that may close.
            return got < expected ? .nonceTooLow : .nonceGap(expected: expected, message: message)
        }
        if text.contains("underpriced") { return .underpriced(message) }
        if text.contains("insufficient funds") || text.contains("exceeds block gas limit") || text.contains("intrinsic gas too low")
            || text.contains("gas limit reached") || text.contains("out of gas in ante") {
            return .refusedForGood(message)
        }
        return .rejected(message)
    }

    /// "invalid nonce; got 3, expected 5" → (3, 5).
    static func ethermintNonce(_ text: String) -> (got: UInt64, expected: UInt64)? {
        guard let start = text.range(of: "invalid nonce; got ") else { return nil }
        let rest = text[start.upperBound...]
        let got = rest.prefix { $0.isASCII && $0.isNumber }
        guard let comma = rest.range(of: ", expected ") else { return nil }
        let expected = rest[comma.upperBound...].prefix { $0.isASCII && $0.isNumber }
        guard let g = UInt64(got), let e = UInt64(expected) else { return nil }
        return (g, e)
    }

    /// The node executed the call (`eth_call`, `eth_estimateGas`) and it reverted. geth answers
    /// code 3 with the revert data; Ethermint's estimateGas loses both on its way through gRPC
    /// ("rpc error: code = Unknown desc = execution reverted: …", code -32000), so the message
    /// counts too.
    public var isExecutionRevert: Bool {
        revertReason != nil || code == 3 || message.lowercased().contains("execution reverted")
    }
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
