import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres

/// After the database lost records (a failover to a lagging replica, a point-in-time restore),
/// the chain may hold tasks our wallet paid for that no job remembers. Before the wallet signs
/// anything new, those tasks are found (TaskPending logs of the wallet from the first nonce the
/// database does not know) and given back to the unsigned jobs whose arguments they carry, so
/// that no job pays a second time. A task another job holds is never adopted.
enum Adoption {
    static func adopt(_ db: PostgresConnection, _ network: any TaskNetwork, _ wallet: Address, chainId: UInt64, fromNonce nonce: UInt64,
                      log: WorkerLog) throws -> Int {
        let created = try network.tasksCreated(by: wallet, fromNonce: nonce)
        guard !created.isEmpty else { return 0 }
        var waiting: [[UInt8]: [(id: Int64, kind: String, submittedAt: Date)]] = [:]
        for job in try JobStore.unsignedCreates(db) {
            waiting[TaskArguments.taskHash(job.taskArgs), default: []].append((job.id, job.kind, job.submittedAt))
        }
        var adopted = 0
        for task in created {
            // Only a job submitted before the task was created can have paid for it.
            guard var candidates = waiting[task.taskHash] else { continue }
            candidates = candidates.filter { $0.submittedAt.timeIntervalSince1970 <= Double(task.time) + 60 }
            for job in candidates {
                guard let kind = TaskKind(rawValue: job.kind),
                      let validated = try? TaskArguments.validate(kind: kind, arguments: try taskArgs(db, job.id),
                                                                    sdSchema: network.sdSchema) else { continue }
                let facts = JobFacts(taskType: validated.taskType, taskHash: task.taskHash, cap: validated.cap, vramLimit: validated.vramLimit,
                                     feeWei: task.fee, walletAddress: wallet, chainId: chainId, txHash: task.txHash,
                                     txBlockNumber: task.block, taskId: task.taskId)
                let note = "adopted task \(task.taskId), created by this job's wallet in tx \(task.txHash.hex) (block \(task.block)) that the database had lost"
                if try JobStore.adopt(db, jobId: job.id, facts: facts, note: note) {
                    log.info("job \(job.id): \(note)")
                    waiting[task.taskHash]?.removeAll { $0.id == job.id }
                    adopted += 1
                    break
                }
            }
        }
        return adopted
    }

    private static func taskArgs(_ db: PostgresConnection, _ id: Int64) throws -> String {
        guard let arguments = try JobStore.job(db, id: id)?.taskArgs else { throw WorkerError("job \(id) vanished") }
        return arguments
    }
}
