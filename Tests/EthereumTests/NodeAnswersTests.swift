import Ethereum
import Testing

/// The same refusal worded by geth and by Ethermint (the node software of the era-D chain) must
/// reach the same verdict: a wrong verdict either re-sends forever or pays twice.
@Suite struct NodeAnswersTests {
    private func verdict(_ message: String, code: Int = -32000) -> SendVerdict {
        JSONRPCError(code: code, message: message).sendVerdict
    }

    @Test func alreadyKnownInBothWordings() {
        #expect(verdict("already known") == .accepted)
        // Cosmos SDK code 19 as Ethermint passes it on, and CometBFT's own words.
        #expect(verdict("tx already in mempool") == .accepted)
        #expect(verdict("tx already exists in cache") == .accepted)
    }

    @Test func nonceMismatchInBothWordings() {
        #expect(verdict("nonce too low") == .nonceTooLow)
        #expect(verdict("invalid nonce; got 3, expected 5: invalid sequence") == .nonceTooLow)
        // One below: the pool already holds a transaction with this nonce.
        #expect(verdict("invalid nonce; got 4, expected 5: invalid sequence: invalid sequence") == .nonceTooLow)
        // A gap: a nonce beyond the next one may pass once the gap closes; never "used".
        #expect(verdict("invalid nonce; got 9, expected 5: invalid sequence")
                == .nonceGap(expected: 5, message: "invalid nonce; got 9, expected 5: invalid sequence"))
        // Garbled numbers are not a verdict on the nonce.
        #expect(verdict("invalid nonce; got x, expected 5") == .rejected("invalid nonce; got x, expected 5"))
        #expect(verdict("invalid nonce; got 99999999999999999999999, expected 5")
                == .rejected("invalid nonce; got 99999999999999999999999, expected 5"))
    }

    @Test func fundsAndFeesInBothWordings() {
        let geth = "insufficient funds for gas * price + value"
        #expect(verdict(geth) == .refusedForGood(geth))
        let ethermint = "sender balance < tx cost (0 < 12000000000000000): insufficient funds"
        #expect(verdict(ethermint) == .refusedForGood(ethermint))
        #expect(verdict("replacement transaction underpriced") == .underpriced("replacement transaction underpriced"))
        #expect(verdict("transaction underpriced") == .underpriced("transaction underpriced"))
        // Below the node's minimum gas price: may pass when prices fall, so not "for good".
        let fee = "insufficient fee; got: 10aphoton required: 20aphoton: insufficient fee"
        #expect(verdict(fee) == .rejected(fee))
    }

    @Test func revertsWithoutCodeThree() {
        // geth: code 3 with data.
        #expect(JSONRPCError(code: 3, message: "execution reverted").isExecutionRevert)
        // Ethermint's eth_estimateGas: the revert crossed gRPC, code and data are gone.
        let grpc = JSONRPCError(code: -32000,
                                message: "rpc error: code = Unknown desc = execution reverted: Task has not exceeded the deadline yet")
        #expect(grpc.isExecutionRevert)
        #expect(grpc.revertReason == .error("Task has not exceeded the deadline yet"))
        let bare = JSONRPCError(code: -32000, message: "execution reverted")
        #expect(bare.isExecutionRevert)
        #expect(bare.revertReason == nil)
        // Not reverts: a node fault and a refusal.
        #expect(!JSONRPCError(code: -32603, message: "devnet: injected JSON-RPC error").isExecutionRevert)
        #expect(!JSONRPCError(code: -32000, message: "nonce too low").isExecutionRevert)
    }
}
