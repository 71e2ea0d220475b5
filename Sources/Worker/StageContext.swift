import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres

/// The one split of a stage's failures: the database's (and a lost lease) are not the job's and go
/// up to the pipeline; anything else (a network failure, an answer nobody expected) is the job's,
/// and `otherwise` turns it into the job's outcome (due again later).
func jobsOwnFailure<T>(_ body: () throws -> T, else otherwise: (any Error) -> T) throws -> T {
    do {
        return try body()
    } catch let error as PostgresError {
        throw error
    } catch let error as LeaseLost {
        throw error
    } catch {
        return otherwise(error)
    }
}

/// What one run of a stage may use besides the job: the network, the clock, the job's stored
/// transactions (read-only), and a notebook of what it saw happen on chain. The store writes
/// the notebook together with the outcome.
final class StageContext {
    let network: any TaskNetwork
    let config: WorkerConfig
    let wallet: Wallet
    let now: Date
    /// The transaction the stage asked to sign in its previous run, now stored: send it.
    let justSigned: StoredTransaction?
    private(set) var observed = Observations()
    private let ledger: (TransactionPurpose) throws -> [StoredTransaction]
    /// The wallet's approval on its way, if any (Hydrogen).
    /// The wallet's approval that may still be mined, and its most recent one whatever its fate.
    let approvals: () throws -> (pending: StoredTransaction?, latest: [UInt8]?)
    /// Our createTasks on their way to the queue that a size read at this block does not count,
    /// and the unsigned creates waiting for room.
    let admissionCounts: (UInt64, Int64) throws -> (onTheWay: Int64, waiting: Int64)
    /// The wallet's stored transactions to send at the nonces in `[from, below)`.
    let walletTransactions: (UInt64, UInt64) throws -> [StoredTransaction]

    init(network: any TaskNetwork, config: WorkerConfig, wallet: Wallet, now: Date = Date(), justSigned: StoredTransaction? = nil,
         approvals: @escaping () throws -> (pending: StoredTransaction?, latest: [UInt8]?) = { (nil, nil) },
         admissionCounts: @escaping (UInt64, Int64) throws -> (onTheWay: Int64, waiting: Int64) = { _, _ in (0, 0) },
         walletTransactions: @escaping (UInt64, UInt64) throws -> [StoredTransaction] = { _, _ in [] },
         ledger: @escaping (TransactionPurpose) throws -> [StoredTransaction]) {
        self.approvals = approvals
        self.admissionCounts = admissionCounts
        self.walletTransactions = walletTransactions
        self.network = network
        self.config = config
        self.wallet = wallet
        self.now = now
        self.justSigned = justSigned
        self.ledger = ledger
    }

    func seconds(since date: Date?) -> Double {
        date.map { now.timeIntervalSince($0) } ?? .infinity
    }

    /// The job's stored transactions of the current attempt, oldest first.
    func transactions(_ purpose: TransactionPurpose) throws -> [StoredTransaction] {
        try ledger(purpose)
    }

    /// Sends stored bytes (again). Network failures throw; the node's verdict is returned. A node
    /// that refuses a nonce ahead of the account's (Ethermint: no queue for future nonces) gets
    /// the wallet's stored transactions of the nonces between first, in order, then these bytes
    /// again: one worker's send no longer waits for another worker's turn.
    func broadcast(_ tx: StoredTransaction) throws -> SendVerdict {
        observed.sent.append(tx.hash)
        let verdict = try network.send(raw: tx.raw)
        guard case .nonceGap(let expected, _) = verdict, expected < tx.nonce, tx.nonce - expected <= 64 else { return verdict }
        for earlier in try walletTransactions(expected, tx.nonce) {
            observed.sent.append(earlier.hash)
            guard case .accepted = try network.send(raw: earlier.raw) else { return verdict }
        }
        observed.sent.append(tx.hash)
        return try network.send(raw: tx.raw)
    }

    /// The node refused these bytes for good: the store marks them, and they are not sent again.
    func refused(_ tx: StoredTransaction, _ reason: String) {
        observed.refused.append((tx.hash, reason))
    }

    /// The receipt of whichever of `txs` was mined, newest first.
    func minedReceipt(of txs: [StoredTransaction]) throws -> (StoredTransaction, TransactionReceipt)? {
        for tx in txs.reversed() {
            guard let receipt = try network.receipt(of: tx.hash) else { continue }
            observed.mined.append((tx.hash, receipt.blockNumber, receipt.status))
            return (tx, receipt)
        }
        return nil
    }

    /// Asks the node for the wallet's pending nonce; the store raises the wallet row to it.
    func reconcileWallet() throws {
        observed.walletNonce = (wallet.address, wallet.chainId, try network.pendingNonce(of: wallet.address))
    }

    /// The chain used the wallet's `nonce` for a transaction the database does not know: the
    /// store marks the wallet for reconciliation.
    func lostRecords(fromNonce nonce: UInt64) {
        observed.lostRecords = (wallet.address, wallet.chainId, nonce)
    }

    /// The price for a new transaction: configured, or the node's suggestion (doubled as the max
    /// fee for EIP-1559 so a rising base fee does not strand it).
    func gasPrice() throws -> BigUInt {
        if let fixed = config.gasPriceWei { return fixed }
        let price = try network.gasPrice()
        return config.useEIP1559 ? price * 2 : price
    }

    /// A transaction to sign from the wallet.
    func draft(_ purpose: TransactionPurpose, _ call: ContractCall, gasLimit: UInt64, gasPrice: BigUInt, tip: BigUInt?,
               replacingNonce: UInt64? = nil, admission: Admission? = nil) -> TransactionDraft {
        TransactionDraft(purpose: purpose, wallet: wallet.address, replacingNonce: replacingNonce, to: call.to, data: call.data,
                         value: call.value, gasLimit: gasLimit, gasPrice: gasPrice, tip: tip, admission: admission)
    }

    /// The one rule for a gas limit from an estimate: twice it (by the time it is mined another
    /// path through the contract may be taken; unused gas is not charged), at least `floor`.
    static func gasLimit(doubling estimate: UInt64, floor: UInt64) -> UInt64 {
        let (doubled, overflow) = estimate.multipliedReportingOverflow(by: 2)
        return max(overflow ? .max : doubled, floor)
    }

    /// The tip for a new EIP-1559 transaction at `price`; nil for legacy.
    func tip(under price: BigUInt) throws -> BigUInt? {
        config.useEIP1559 ? min(try network.maxPriorityFeePerGas(), price) : nil
    }

    /// Prices for a transaction that replaces one priced at `old` (and `oldTip`) in the pool: 25%
    /// more on the price and on the tip (nodes want 10%), at least what the node asks now, at most
    /// `ceiling`. nil when the ceiling leaves no room for a replacement the node would take.
    func replacementPrices(overPrice old: BigUInt, tip oldTip: BigUInt?, ceiling: BigUInt?) throws -> (price: BigUInt, tip: BigUInt?)? {
        func bump(_ old: BigUInt, _ now: BigUInt, _ cap: BigUInt?) -> BigUInt? {
            var new = max(old * 125 / 100, old + 1, now)
            if let cap { new = min(new, cap) }
            return new * 100 >= old * 110 ? new : nil
        }
        guard let price = bump(old, try gasPrice(), ceiling) else { return nil }
        guard let oldTip else { return (price, nil) }
        guard let tip = bump(oldTip, try network.maxPriorityFeePerGas(), price) else { return nil }
        return (price, tip)
    }

    /// A zero-value transfer to the wallet itself at `nonce`: what frees a nonce no transaction should use.
    func fillDraft(nonce: UInt64, _ prices: (price: BigUInt, tip: BigUInt?)) -> TransactionDraft {
        draft(.fillNonce, network.fillCall(for: wallet.address), gasLimit: 21_000, gasPrice: prices.price, tip: prices.tip,
              replacingNonce: nonce)
    }

    /// A network hiccup (timeout, 5xx, refused connection): due again with backoff.
    func retryLater(_ job: Job, after error: any Error) -> StageOutcome {
        let message = "\(error)"
        return .wait(after: config.backoff(attempt: job.stageAttempts), note: "retrying after error: \(message)", failedTry: true,
                     error: message)
    }
}
