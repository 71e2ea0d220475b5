import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres

/// Every nonce a wallet reserved gets used, so its later transactions never stall. Stages follow
/// their own transactions (a createTask while the job is in create, a cancelTask while it polls);
/// the keeper takes the rest: a cancelTask whose job has moved on, a createTask of a job that was
/// cancelled or retried, a nonce reserved and then lost. It sends them again, and after
/// `replaceAfter` replaces them with a zero-value transfer to the wallet itself. One keeper per
/// wallet works at a time across all workers (an advisory lock).
struct WalletKeeper {
    let network: any TaskNetwork
    let config: WorkerConfig
    let log: WorkerLog

    func pass(_ db: PostgresConnection, _ wallet: Wallet) throws {
        _ = try JobStore.whileKeepingWallet(db, wallet.address) {
            let context = StageContext(network: network, config: config, wallet: wallet) { _ in [] }
            defer { try? JobStore.recordObservations(db, context.observed) }
            let mined = try network.minedNonce(of: wallet.address)
            let orphans = try JobStore.unfollowedTransactions(db, wallet: wallet.address, fromNonce: mined)
            for nonce in Set(orphans.map(\.nonce)).sorted() {
                // One nonce's network hiccup must not keep the keeper from the others.
                do {
                    try follow(db, orphans.filter { $0.nonce == nonce }, context)
                } catch let error as PostgresError {
                    throw error
                } catch {
                    log.error("wallet keeper \(wallet.address.checksummed), nonce \(nonce): \(error)")
                }
            }
            // Reserved and lost (a restore): nothing will ever use these nonces but a fill. Only
            // beyond what the node already holds, which may be ours or anyone's.
            let pending = try network.pendingNonce(of: wallet.address)
            for nonce in try JobStore.unusedNonces(db, wallet: wallet.address, fromNonce: max(mined, pending)) {
                let price = try context.gasPrice()
                let draft = context.draft(.fillNonce, network.fillCall(for: wallet.address), gasLimit: 21_000, gasPrice: price,
                                          tip: try context.tip(under: price), replacingNonce: nonce)
                let fill = try JobStore.recordUnowned(db, draft, nonce: nonce, jobId: nil) { try wallet.sign(draft, nonce: $0) }
                log.info("wallet \(wallet.address.checksummed): nonce \(nonce) was reserved and never used: filled by tx \(fill.hash.hex)")
                _ = try context.broadcast(fill)
            }
        }
    }

    /// The transactions of one nonce that no stage follows: mined, sent again, or filled (and the
    /// fill bumped while the price rises), by the same rules a stage follows its own.
    private func follow(_ db: PostgresConnection, _ txs: [StoredTransaction], _ context: StageContext) throws {
        switch try NonceFollower(context: context).next(txs, replacement: .fill) {
        case .mined, .wait:
            return
        case .send(let tx):
            try send(tx, context)
        case .sign(let draft, let why):
            let latest = txs.last!
            let fill = try JobStore.recordUnowned(db, draft, nonce: latest.nonce, jobId: latest.jobId) { try context.wallet.sign(draft, nonce: $0) }
            log.info("wallet \(context.wallet.address.checksummed): \(why) (job \(latest.jobId.map(String.init) ?? "-")): tx \(fill.hash.hex)")
            try send(fill, context)
        }
    }

    private func send(_ tx: StoredTransaction, _ context: StageContext) throws {
        switch try context.broadcast(tx) {
        case .accepted, .nonceTooLow, .rejected, .nonceGap: break
        case .underpriced(let message), .refusedForGood(let message): context.refused(tx, message)
        }
    }
}
