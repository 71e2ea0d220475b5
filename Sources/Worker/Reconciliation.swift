import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres

/// Lost records mended while workers run. A failover to a lagging replica or a restore does not
/// stop anyone, so the check cannot wait for a start-up: on every keeper pass each wallet of the
/// chain in the database (not only ours: adoption needs no key, and a worker holding only wallet B
/// must not pay for jobs whose lost tasks wallet A paid) is compared with the chain. A chain ahead
/// of the database, or a stage that met a nonce used by a transaction it does not know, marks the
/// wallet (`reconcile_from`); while any wallet is marked no worker hands out a new nonce. Then, once
/// the wallet's transactions in the pool are mined (or `createDeadline` has passed): jobs signed at
/// a nonce the chain used otherwise are unsigned, lost tasks are adopted by the unsigned jobs that
/// carry their arguments, the wallet's next nonce is raised past the chain's, and the mark goes.
struct Reconciliation {
    let network: any TaskNetwork
    let config: WorkerConfig
    let log: WorkerLog

    func pass(_ db: PostgresConnection, chainId: UInt64, ours: [Address]) throws {
        var addresses = Set(ours)
        for row in try JobStore.wallets(db, chainId: chainId) { addresses.insert(row.address) }
        for address in addresses.sorted(by: { $0.bytes.lexicographicallyPrecedes($1.bytes) }) {
            do {
                try reconcile(db, address, chainId: chainId)
            } catch let error as PostgresError {
                throw error
            } catch {
                log.error("reconciling wallet \(address.checksummed): \(error)")
            }
        }
    }

    /// One wallet, under its keeper's lock (one worker at a time); another worker holding the lock
    /// is doing it.
    func reconcile(_ db: PostgresConnection, _ address: Address, chainId: UInt64) throws {
        _ = try JobStore.whileKeepingWallet(db, address) { try reconcileLocked(db, address, chainId: chainId) }
    }

    private func reconcileLocked(_ db: PostgresConnection, _ address: Address, chainId: UInt64) throws {
        // The chain first, then the database: every nonce is reserved in the database before it
        // is sent, so a chain ahead of a database read after it means records were lost.
        let pending = try network.pendingNonce(of: address)
        let known = try JobStore.nextNonce(db, wallet: address)
        // Once marked, a wallet is not warned about again on every pass while its pool settles.
        if pending > (known ?? 0), try JobStore.pendingReconciliation(db, address) == nil {
            log.warning("wallet \(address.checksummed): the chain has used nonces up to \(pending), the database knows \(known.map { "only up to \($0)" } ?? "no wallet row"); records were lost: nothing is signed until its lost tasks are adopted")
            try JobStore.requestReconciliation(db, address, chainId: chainId, fromNonce: known ?? 0)
        }
        guard let (from, since) = try JobStore.pendingReconciliation(db, address) else { return }
        let mined = try network.minedNonce(of: address)
        // Lost transactions still in the pool show their tasks only once mined.
        if mined < pending, -since.timeIntervalSinceNow < config.createDeadline { return }
        var unsigned = 0
        for job in try JobStore.signedCreates(db, wallet: address, fromNonce: from, below: mined) {
            // The chain mined this nonce; if none of the job's transactions at it has a receipt,
            // another one used it, and the job's createTask can never be mined.
            if try job.hashes.contains(where: { try network.receipt(of: $0) != nil }) { continue }
            let note = "nonce \(job.nonce) was used by a transaction the database lost: this createTask can never be mined and nothing was paid; unsigned again"
            if try JobStore.unsign(db, jobId: job.jobId, nonce: job.nonce, note: note) { unsigned += 1 }
        }
        let adopted = try Adoption.adopt(db, network, address, chainId: chainId, fromNonce: from, log: log)
        try JobStore.finishReconciliation(db, address, fromNonce: from, pendingNonce: max(pending, mined))
        log.info("wallet \(address.checksummed) reconciled from nonce \(from): \(adopted) lost task(s) adopted, \(unsigned) job(s) signed at a used nonce unsigned; signing again from nonce \(max(pending, mined))")
    }
}
