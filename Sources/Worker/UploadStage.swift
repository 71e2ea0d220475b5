import Crynux
import Foundation
import JobQueue

/// upload: send the exact argument string to the Relay, signed by the wallet that created the task.
struct UploadStage {
    func decide(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        let config = context.config
        guard let taskId = job.taskId else {
            return .fail(reason: "job is in upload without a task id", retryFrom: .upload)
        }
        if job.cancelRequested {
            // The task was paid for and will never get its arguments: take the fee back.
            return .advance(to: .poll, facts: JobFacts(refundReason: "cancelled by operator"),
                            note: "cancelled before the arguments were uploaded: cancelling task \(taskId) on chain for the refund")
        }
        if context.seconds(since: job.stageEnteredAt) > config.uploadDeadline {
            let reason = "the relay did not accept the task arguments within \(Int(config.uploadDeadline)) s (last error: \(job.lastError ?? "none"))"
            return .advance(to: .poll, facts: JobFacts(refundReason: reason), note: "\(reason): cancelling task \(taskId) on chain for the refund")
        }
        guard let arguments = job.taskArgs else { throw WorkerError("job \(job.id) was claimed for upload without its arguments") }
        let uploaded = JobFacts(stamps: [.argsUploaded])
        switch try context.network.uploadTaskArguments(taskId: taskId, arguments: arguments, signer: context.wallet.address) {
        case .uploaded:
            return .advance(to: .poll, after: config.pollInterval, facts: uploaded, note: "arguments uploaded to the relay")
        case .alreadyUploaded:
            return .advance(to: .poll, after: config.pollInterval, facts: uploaded, note: "arguments were already on the relay")
        case .notYetOnChain:
            // The relay has not synced the block yet; it usually does within a second.
            return .wait(after: min(config.pollInterval, 1))
        case .rejected(let message):
            // The task is paid for and the Relay will never give it arguments: it goes the way
            // of the upload deadline, cancelled on chain for its refund, and the job says why.
            let reason = "the relay refused the task arguments: \(message)"
            return .advance(to: .poll, facts: JobFacts(refundReason: reason), note: "\(reason): cancelling task \(taskId) on chain for the refund")
        }
    }
}
