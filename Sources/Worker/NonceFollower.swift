import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue

/// The one way a wallet's transactions at one nonce are followed, whatever their kind (createTask
/// and its replacements, cancelTask, approve, the fill of a nonce), by the stages and the wallet
/// keeper alike: mined, sent again, replaced at a higher price, or filled. Every timer and price
/// rule lives here, so no two followers of the same nonce can disagree.
///
/// The timers: bytes with no receipt are sent again `rebroadcastAfter` after their last send, and
/// replaced `replaceAfter` after the newest of them was *signed* (never after its last send: a
/// re-send must not postpone the bump, or a transaction priced below a rising gas price is sent
/// at that price forever and every later nonce of the wallet waits behind it).
struct NonceFollower {
    let context: StageContext

    /// What may replace the newest transaction at the nonce when it is not mined in time.
    enum Replacement {
        /// The same call at a higher price, up to `ceiling` (then the same bytes are sent again).
        case sameCall(ContractCall, ceiling: BigUInt)
        /// Only a fill: the keeper's transactions, whose jobs no longer need them mined.
        case fill
    }

    enum Step {
        case mined(StoredTransaction, TransactionReceipt)
        /// Send these stored bytes (again).
        case send(StoredTransaction)
        /// Sign this draft at the same nonce; `why` is for the job's history.
        case sign(TransactionDraft, why: String)
        /// Nothing is due yet.
        case wait
    }

    /// `txs`: every stored transaction at one nonce, oldest first. `giveUp`: the transaction is no
    /// longer wanted (its deadline passed, the job was cancelled): the nonce is filled now.
    func next(_ txs: [StoredTransaction], replacement: Replacement, giveUp: String? = nil) throws -> Step {
        if let (tx, receipt) = try context.minedReceipt(of: txs) { return .mined(tx, receipt) }
        let config = context.config
        let fills = txs.filter { $0.purpose == .fillNonce }
        if let giveUp, fills.isEmpty, let nonce = txs.last?.nonce {
            return .sign(try fill(txs), why: "\(giveUp): nonce \(nonce) is filled instead")
        }
        // Once a fill is signed the nonce is being filled: the fill is what is followed (a refused
        // one is not replaced by a fresh fill on every run, only bumped on the replacement timer).
        let followed = fills.isEmpty ? txs : fills
        guard let latest = followed.last(where: { $0.refusedAt == nil }) ?? followed.last else { return .wait }
        if latest.lastSentAt != nil, context.seconds(since: latest.signedAt) >= config.replaceAfter {
            switch (latest.purpose, replacement) {
            case (.fillNonce, _):
                if let draft = try bumpedFill(txs) {
                    return .sign(draft, why: "fill of nonce \(latest.nonce) not mined: replaced at gas price \(draft.gasPrice)")
                }
            case (_, .sameCall(let call, let ceiling)):
                if let prices = try bump(txs, ceiling: ceiling) {
                    let draft = context.draft(latest.purpose, call, gasLimit: latest.gasLimit, gasPrice: prices.price, tip: prices.tip,
                                              replacingNonce: latest.nonce)
                    let waited = Int(context.seconds(since: txs.first?.signedAt))
                    return .sign(draft, why: "\(latest.purpose.rawValue) not mined after \(waited) s: replaced at gas price \(prices.price)")
                }
            case (_, .fill):
                return .sign(try fill(txs), why: "\(latest.purpose.rawValue) not mined: nonce \(latest.nonce) is filled")
            }
        }
        // Bytes the node refused are offered again only on the slower replacement timer (a wallet
        // that could not pay for them may have been funded since).
        let resendAfter = latest.refusedAt == nil ? config.rebroadcastAfter : config.replaceAfter
        if latest.lastSentAt == nil || context.seconds(since: latest.lastSentAt) >= resendAfter {
            return .send(latest)
        }
        return .wait
    }

    /// Prices for a replacement of every transaction at the nonce: above the highest one signed,
    /// refused ones included (a replacement the node called underpriced is not offered again at
    /// the same price), and at least what the node asks now. nil when `ceiling` leaves no room.
    func bump(_ txs: [StoredTransaction], ceiling: BigUInt?) throws -> (price: BigUInt, tip: BigUInt?)? {
        guard let highest = txs.max(by: { $0.gasPrice < $1.gasPrice }) else { return nil }
        let tip = txs.compactMap(\.tip).max()
        return try context.replacementPrices(overPrice: highest.gasPrice, tip: tip, ceiling: ceiling)
    }

    /// The first fill of a nonce: whatever it takes to replace what is there (a fill costs 21,000
    /// gas, a tenth of a createTask, and a nonce left unused stalls the wallet).
    func fill(_ txs: [StoredTransaction]) throws -> TransactionDraft {
        guard let prices = try bump(txs, ceiling: nil), let nonce = txs.last?.nonce else {
            throw WorkerError("no transaction to fill a nonce over")
        }
        return context.fillDraft(nonce: nonce, prices)
    }

    /// A fill that is not mined either is bumped like any transaction, up to the configured
    /// ceiling over the first fill's price.
    private func bumpedFill(_ txs: [StoredTransaction]) throws -> TransactionDraft? {
        guard let firstFill = txs.first(where: { $0.purpose == .fillNonce }), let nonce = txs.last?.nonce else { return nil }
        let config = context.config
        let ceiling = max(config.maxGasPriceWei ?? firstFill.gasPrice * BigUInt(config.gasPriceCeilingFactor), firstFill.gasPrice)
        return try bump(txs, ceiling: ceiling).map { context.fillDraft(nonce: nonce, $0) }
    }
}
