import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue

/// Lithium validate, at ScoreReady or ErrorReported: the VRF proof over the task's sampling seed
/// with the wallet key, stored (with whether it selects the task) before it is acted on. Not
/// selected: the task is validated alone. Selected (1 % of tasks): two more tasks with the same
/// task id and new nonces are stored, then created (an LLM group pinned to the first task's GPU),
/// and once all three are ready (or aborted) the group is validated. A group member that aborts
/// has its queued siblings cancelled, as the network's bridge does. The Relay pays the node and
/// keeps the fee when no validation comes within its app_validation_timeout, so a group still
/// incomplete near that deadline has its queued members cancelled and is validated as it stands.
struct LithiumValidateStage {
    func decide(_ job: Job, _ context: LithiumContext) throws -> StageOutcome {
        guard let current = context.current, let seed = current.samplingSeed else {
            return .fail(reason: "the job's Relay task has no sampling seed to validate", retryFrom: .poll)
        }
        guard let proof = current.vrfProof, let selected = current.vrfSelected else {
            let (proof, beta) = try ECVRF.prove(key: context.wallet.key, alpha: seed)
            var change = RelayTaskChange(commitment: current.commitment)
            change.vrfProof = proof
            change.vrfSelected = ECVRF.selects(beta: beta)
            var facts = JobFacts()
            facts.relayTaskChanges = [change]
            return .prepare(facts: facts, note: ECVRF.selects(beta: beta)
                ? "VRF: Relay task \(current.commitment.hex) is selected for a validation group of three"
                : "VRF: Relay task \(current.commitment.hex) is validated alone")
        }
        if current.validatedAt != nil {
            return .advance(to: .poll, facts: JobFacts(), note: "validation already sent")
        }
        return selected ? try group(job, current, proof, context) : try single(job, current, proof, context)
    }

    // MARK: alone

    private func single(_ job: Job, _ task: RelayTaskRecord, _ proof: [UInt8], _ context: LithiumContext) throws -> StageOutcome {
        let outcome = try context.relay.validate(commitments: [task.commitment], taskId: task.taskId, proof: proof,
                                                 publicKey: context.wallet.key.publicKey)
        return try settled(outcome, [task], context)
    }

    // MARK: a group of three

    private func group(_ job: Job, _ first: RelayTaskRecord, _ proof: [UInt8], _ context: LithiumContext) throws -> StageOutcome {
        let members = context.group.filter { $0.member > 0 }
        if members.count < 2 {
            guard let arguments = job.taskArgs else { throw WorkerError("job \(job.id) was claimed for validate without its arguments") }
            return try prepareMembers(job, first, arguments, context)
        }
        let all = [first] + members
        var facts = JobFacts()
        if members.contains(where: { $0.createdAt == nil }) {
            // A group whose first task has expired meanwhile (its members waited for funds past
            // the Relay's validation timeout) can no longer be validated: members created now
            // would be two fees for nothing.
            if case .found(let task) = try context.relay.task(first.commitment), !task.status.awaitsValidation {
                facts.relayTaskChanges = [first.change(from: task)]
                if task.status == .endAborted {
                    facts.stamps = [.taskFinished]
                    facts.abortReason = task.outcomeName
                    return .fail(reason: "Relay task \(first.commitment.hex) ended \(task.ending) before its validation group could be created; "
                                    + "the group's two more tasks were never sent", retryFrom: .create, facts: facts)
                }
            }
        }
        // Created before anything is judged: the Relay validates only three tasks it knows.
        for member in members where member.createdAt == nil {
            guard let arguments = job.taskArgs else { throw WorkerError("job \(job.id) was claimed for validate without its arguments") }
            switch try context.relay.create(member.request(arguments: arguments)) {
            case .created(let created):
                facts.relayTaskChanges.append(member.change(from: created))
            case .alreadyUploaded:
                var change = RelayTaskChange(commitment: member.commitment)
                change.created = true
                change.charged = member.taskFee
                facts.relayTaskChanges.append(change)
            case .insufficientBalance:
                // A member created a moment ago keeps its record: sent again, it would be counted twice.
                return .wait(after: context.config.fundsRetry, facts: facts, failedTry: true,
                             error: "\(CreateStage.waitingForFunds): the Relay Account of \(context.wallet.address.checksummed) cannot pay the validation group's task \(member.commitment.hex) (\(cnx(member.taskFee))); the group waits, within the Relay's validation timeout")
            case .rejected(let words):
                return .fail(reason: "the Relay refused the validation group's task \(member.commitment.hex) (\(words)); Relay task \(first.commitment.hex) stays unvalidated and its fee goes to the node at the Relay's validation timeout",
                             retryFrom: .create, facts: facts)
            }
        }
        if !facts.relayTaskChanges.isEmpty {
            return .wait(after: context.config.pollInterval, facts: facts, note: "validation group created: \(members.map { $0.commitment.hex }.joined(separator: ", "))")
        }
        // Where the three are.
        var seen: [(record: RelayTaskRecord, task: LithiumTask)] = []
        for record in all {
            guard case .found(let task) = try context.relay.task(record.commitment) else {
                throw WorkerError("the Relay does not show the validation group's task \(record.commitment.hex)")
            }
            seen.append((record, task))
            facts.relayTaskChanges.append(record.change(from: task))
        }
        if seen.contains(where: { $0.task.status == .endAborted && $0.task.abortReason == .creatorValidationTimeout }) {
            // The Relay refuses this group for good; its queued members would only cost a fee.
            try cancelQueued(seen, &facts, context)
            facts.stamps = [.taskFinished]
            facts.abortReason = LithiumAbortReason.creatorValidationTimeout.name
            return .fail(reason: "the validation group of Relay task \(first.commitment.hex) expired (a member reached the Relay's validation timeout): "
                            + seen.map { "\($0.record.commitment.hex) \($0.task.ending)" }.joined(separator: "; "), retryFrom: .create, facts: facts)
        }
        if seen.contains(where: { $0.task.status.followsValidation }) {
            // Our group validation went through and its answer was lost (a worker killed after
            // sending it): the Relay has moved the group on.
            for record in all {
                var change = RelayTaskChange(commitment: record.commitment)
                change.validated = true
                facts.relayTaskChanges.append(change)
            }
            return .advance(to: .poll, facts: facts, note: "the Relay had our group validation already: "
                                + seen.map { "\($0.record.commitment.hex) \($0.task.status.name)" }.joined(separator: ", "))
        }
        let ready = seen.allSatisfy { $0.task.status.awaitsValidation || $0.task.status == .endAborted }
        if ready {
            let ordered = seen.sorted { $0.task.sequence < $1.task.sequence }.map(\.record)
            let outcome = try context.relay.validate(commitments: ordered.map(\.commitment), taskId: first.taskId, proof: proof,
                                                     publicKey: context.wallet.key.publicKey)
            var settledOutcome = try settled(outcome, all, context)
            if case .advance(let stage, let after, var more, let note) = settledOutcome {
                more.relayTaskChanges = facts.relayTaskChanges + more.relayTaskChanges
                settledOutcome = .advance(to: stage, after: after, facts: more, note: note)
            }
            return settledOutcome
        }
        // A member aborted: the bridge cancels the queued siblings (they would run for nothing).
        // Near the Relay's validation deadline, queued members are cancelled too, so that the
        // group can be validated as it stands before the first task's fee goes to its node.
        let deadline = (first.scoreReadyAt ?? seen[0].task.scoreReadyTime).map {
            $0.addingTimeInterval(context.config.lithiumValidationTimeout - context.config.lithiumValidationMargin)
        }
        if seen.contains(where: { $0.task.status == .endAborted }) || deadline.map({ context.now >= $0 }) == true {
            try cancelQueued(seen, &facts, context)
        }
        return .wait(after: context.config.pollInterval, facts: facts)
    }

    /// The two more tasks, stored before they are sent: the same task id, their own nonces, the
    /// same request; an LLM group runs on the first task's GPU (the Relay compares LLM answers
    /// for equality, which only the same GPU model gives).
    private func prepareMembers(_ job: Job, _ first: RelayTaskRecord, _ arguments: String, _ context: LithiumContext) throws -> StageOutcome {
        var gpu = ("", UInt64(0))
        if first.taskType == LithiumTaskType.llm.rawValue {
            guard case .found(let node) = try context.relay.selectedNode(first.commitment) else {
                throw WorkerError("the Relay does not name the node of Relay task \(first.commitment.hex) yet")
            }
            gpu = (node.gpuName, node.gpuVram)
        }
        let members = (1...2).map { member -> RelayTaskRecord in
            let nonce = LithiumIdentity.nonce(key: context.wallet.key, job: job, attempt: first.attempt, member: member, arguments: arguments)
            var record = RelayTaskRecord(commitment: LithiumTaskRequest.commitment(taskId: first.taskId, nonce: nonce), jobId: job.id,
                                         attempt: first.attempt, member: member, wallet: context.wallet.address, taskId: first.taskId,
                                         nonce: nonce, taskType: first.taskType, taskFee: first.taskFee, minVram: first.minVram,
                                         requiredGPU: gpu.0, requiredGPUVram: gpu.1, taskVersion: first.taskVersion,
                                         taskSize: first.taskSize, modelIds: first.modelIds)
            if gpu.0.isEmpty { record.requiredGPU = first.requiredGPU; record.requiredGPUVram = first.requiredGPUVram }
            return record
        }
        var facts = JobFacts()
        facts.relayTasksPrepared = members
        return .prepare(facts: facts, note: "validation group prepared: \(members.map { $0.commitment.hex }.joined(separator: ", "))"
                            + (gpu.0.isEmpty ? "" : " on \(gpu.0) (\(gpu.1) GB)") + ", \(cnx(first.taskFee)) each")
    }

    private func cancelQueued(_ seen: [(record: RelayTaskRecord, task: LithiumTask)], _ facts: inout JobFacts, _ context: LithiumContext) throws {
        for (record, task) in seen where task.status == .queued && record.cancelSentAt == nil {
            // Best effort, as the bridge's: a member that has just started runs on.
            let outcome = try context.relay.cancel(record.commitment)
            var change = RelayTaskChange(commitment: record.commitment)
            change.cancelSent = true
            if outcome == .cancelled {
                change.relayStatus = LithiumStatus.endAborted.rawValue
                change.abortReason = LithiumAbortReason.creatorCancelled.rawValue
                change.ended = true
                change.refunded = record.taskFee
            }
            facts.relayTaskChanges.append(change)
        }
    }

    /// The Relay's answer to a validation. "illegal task state" after a lost answer means our
    /// validation already went through: the task has moved on.
    private func settled(_ outcome: LithiumValidateOutcome, _ tasks: [RelayTaskRecord], _ context: LithiumContext) throws -> StageOutcome {
        var facts = JobFacts()
        switch outcome {
        case .validated:
            for task in tasks {
                var change = RelayTaskChange(commitment: task.commitment)
                change.validated = true
                facts.relayTaskChanges.append(change)
            }
            return .advance(to: .poll, after: context.config.pollInterval, facts: facts,
                            note: tasks.count == 1 ? "Relay task \(tasks[0].commitment.hex) validated" : "validation group of \(tasks.count) validated")
        case .refused(let words):
            if case .found(let task) = try context.relay.task(tasks[0].commitment), !task.status.awaitsValidation {
                for record in tasks {
                    var change = RelayTaskChange(commitment: record.commitment)
                    change.validated = true
                    facts.relayTaskChanges.append(change)
                }
                facts.relayTaskChanges.append(tasks[0].change(from: task))
                return .advance(to: .poll, facts: facts, note: "the Relay had our validation already (\(words)); Relay task is \(task.status.name)")
            }
            return .fail(reason: "the Relay refused the validation (\(words)); the task's fee goes to its node at the Relay's validation timeout",
                         retryFrom: .validate, facts: facts)
        }
    }
}
