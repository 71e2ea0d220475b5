import Foundation

/// One job described for people: the facts `show` prints and the dashboard's job page lists, in
/// the same words.
extension Job {
    /// (name, value) pairs of what is known, in a fixed order; unknown facts are left out.
    public func describedFacts(formatDate: (Date) -> String) -> [(name: String, value: String)] {
        let facts: [(String, String?)] = [
            ("job", "\(id) (\(kind))"), ("profile", networkProfile), ("status", status.rawValue), ("stage", stage.rawValue),
            ("submitted", formatDate(submittedAt)), ("finished", finishedAt.map(formatDate)),
            ("next run", runAt.map(formatDate)), ("attempts in stage", String(stageAttempts)),
            ("wallet", walletAddress?.checksummed), ("nonce", txNonce.map(String.init)), ("tx hash", txHash?.hex),
            ("block", txBlockNumber.map(String.init)), ("task id", taskId.map(String.init)),
            ("fee (wei)", feeWei?.description), ("CNX pulled (wei)", tokenFeeWei?.description),
            ("approval", approvalTxHash?.hex), ("relay task", relayCommitment?.hex), ("cap", cap.map(String.init)), ("vram (GB)", vramLimit.map(String.init)),
            ("abort reason", abortReason), ("refund", refundReason), ("error", lastError), ("retry from", retryStage?.rawValue),
            ("re-created", recreations > 0 ? "\(recreations) time(s) (evicted, or no free nodes by the block)" : nil),
        ]
        return facts.compactMap { name, value in value.map { (name, $0) } }
    }
}

extension StoredTransaction {
    /// What each transaction of a job was for ("create", "replacement", "fill", …), in order: a
    /// later transaction at a nonce already used by the job replaces the earlier one.
    public static func roles(of transactions: [StoredTransaction]) -> [String] {
        var seenNonces: Set<String> = []
        return transactions.map { tx in
            let key = "\(tx.wallet.bytes.hex):\(tx.nonce)"
            let again = seenNonces.contains(key)
            seenNonces.insert(key)
            switch tx.purpose {
            case .createTask: return again ? "replacement" : "create"
            case .cancelTask: return again ? "cancel (replacement)" : "cancel"
            case .fillNonce: return "fill"
            case .approve: return again ? "approve (replacement)" : "approve"
            }
        }
    }

    /// Mined (and how), refused, sent or only signed.
    public var stateDescription: String {
        minedBlock.map { "mined in block \($0)\(minedStatus == false ? " (reverted)" : "")" }
            ?? refusal.map { "refused: \($0)" } ?? (sendCount > 0 ? "sent \(sendCount)×, not mined" : "signed, not sent")
    }

    public var priceDescription: String {
        tip.map { "max fee \(gasPrice), tip \($0)" } ?? "gas price \(gasPrice)"
    }
}
