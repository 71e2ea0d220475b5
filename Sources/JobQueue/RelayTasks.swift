import BigInt
import Ethereum
import Foundation
import Postgres

/// A task a job created (or is about to create) on the Lithium Relay: a `crynux.relay_tasks` row.
/// Written before its create request is sent; the Relay's answers are added as they come.
public struct RelayTaskRecord: Sendable, Equatable {
    public var commitment: [UInt8]
    public var jobId: Int64
    /// The job's n-th task (0 first); a retry after a dead task is the next attempt.
    public var attempt: Int
    /// 0: the job's task; 1, 2: the two more of its validation group.
    public var member: Int
    public var wallet: Address
    public var taskId: [UInt8]
    public var nonce: [UInt8]
    public var taskType: UInt8
    public var taskFee: BigUInt
    public var minVram: UInt64
    public var requiredGPU: String
    public var requiredGPUVram: UInt64
    public var taskVersion: String
    public var taskSize: UInt64
    public var modelIds: [String]

    public var preparedAt: Date?
    public var createdAt: Date?
    public var sequence: UInt64?
    public var samplingSeed: [UInt8]?
    public var relayStatus: UInt8?
    public var abortReason: UInt8?
    public var selectedNode: Address?
    public var relayTimeout: UInt64?
    public var scoreReadyAt: Date?
    public var vrfProof: [UInt8]?
    public var vrfSelected: Bool?
    public var validatedAt: Date?
    public var cancelSentAt: Date?
    public var endedAt: Date?

    public init(commitment: [UInt8], jobId: Int64, attempt: Int, member: Int, wallet: Address, taskId: [UInt8], nonce: [UInt8],
                taskType: UInt8, taskFee: BigUInt, minVram: UInt64, requiredGPU: String = "", requiredGPUVram: UInt64 = 0,
                taskVersion: String, taskSize: UInt64, modelIds: [String]) {
        self.commitment = commitment
        self.jobId = jobId
        self.attempt = attempt
        self.member = member
        self.wallet = wallet
        self.taskId = taskId
        self.nonce = nonce
        self.taskType = taskType
        self.taskFee = taskFee
        self.minVram = minVram
        self.requiredGPU = requiredGPU
        self.requiredGPUVram = requiredGPUVram
        self.taskVersion = taskVersion
        self.taskSize = taskSize
        self.modelIds = modelIds
    }

    init(row: PostgresRow) throws {
        let read = RowReader(row)
        guard let commitment = try read.hexBytes("commitment", count: 32), let wallet = try read.address("wallet_address"),
              let taskId = try read.hexBytes("task_id", count: 32), let nonce = try read.hexBytes("nonce", count: 32),
              let fee = try read.wei("task_fee_wei"), let minVram = try read.unsigned("min_vram"),
              let gpuVram = try read.unsigned("required_gpu_vram"), let size = try read.unsigned("task_size") else {
            throw PostgresError(.decoding, "a crynux.relay_tasks row lacks a required value")
        }
        self.init(commitment: commitment, jobId: try row.get("job_id"), attempt: try row.get("attempt"), member: try row.get("member"),
                  wallet: wallet, taskId: taskId, nonce: nonce, taskType: UInt8(clamping: try row.get("task_type", as: Int.self)),
                  taskFee: fee, minVram: minVram, requiredGPU: try row.get("required_gpu"), requiredGPUVram: gpuVram,
                  taskVersion: try row.get("task_version"), taskSize: size, modelIds: try Self.modelIds(row))
        preparedAt = try row.optional("prepared_at")
        createdAt = try row.optional("created_at")
        sequence = try read.unsigned("sequence")
        samplingSeed = try read.hexBytes("sampling_seed", count: 32)
        relayStatus = try row.optional("relay_status", as: Int.self).map { UInt8(clamping: $0) }
        abortReason = try row.optional("abort_reason", as: Int.self).map { UInt8(clamping: $0) }
        selectedNode = try read.address("selected_node")
        relayTimeout = try read.unsigned("relay_timeout")
        scoreReadyAt = try row.optional("score_ready_at")
        vrfProof = try read.hexBytes("vrf_proof", count: 81)
        vrfSelected = try row.optional("vrf_selected")
        validatedAt = try row.optional("validated_at")
        cancelSentAt = try row.optional("cancel_sent_at")
        endedAt = try row.optional("ended_at")
    }
}

extension RelayTaskRecord {
    /// `model_ids` travels as comma-separated hex of each id's UTF-8 (`relayTaskColumns`): the
    /// store has no array decoder, and a request sent again must carry exactly the same ids.
    static func modelIds(_ row: PostgresRow) throws -> [String] {
        let joined: String = try row.optional("model_ids_hex") ?? ""
        guard !joined.isEmpty else { return [] }
        return try joined.split(separator: ",").map { part in
            guard let bytes = [UInt8](hex: String(part)), let id = String(validating: bytes, as: UTF8.self) else {
                throw PostgresError(.decoding, "a crynux.relay_tasks row has an unreadable model id")
            }
            return id
        }
    }
}

/// What a stage learned of one of the job's Relay tasks; only what is set is written.
public struct RelayTaskChange: Sendable, Equatable {
    public var commitment: [UInt8]
    /// The Relay has the task (created, or "Task already uploaded" for our commitment).
    public var created = false
    public var sequence: UInt64?
    public var samplingSeed: [UInt8]?
    public var relayStatus: UInt8?
    public var abortReason: UInt8?
    public var selectedNode: Address?
    public var relayTimeout: UInt64?
    public var scoreReadyAt: Date?
    public var vrfProof: [UInt8]?
    public var vrfSelected: Bool?
    public var validated = false
    public var cancelSent = false
    public var ended = false
    /// For the fee metrics only (the row has the fee): what this change found charged, or refunded.
    public var charged: BigUInt?
    public var refunded: BigUInt?

    public init(commitment: [UInt8]) { self.commitment = commitment }
}

extension JobStore {
    /// The job's Relay tasks, oldest attempt first, its task before its group's members.
    public static func relayTasks(_ db: PostgresConnection, jobId: Int64) throws -> [RelayTaskRecord] {
        try relayTasks(db, jobIds: [jobId])[jobId] ?? []
    }

    /// The Relay tasks of several jobs in one statement (the jobs of a claim), by job.
    public static func relayTasks(_ db: PostgresConnection, jobIds: [Int64]) throws -> [Int64: [RelayTaskRecord]] {
        let records = try db.query("""
            SELECT r.*, (SELECT string_agg(encode(convert_to(m, 'UTF8'), 'hex'), ',' ORDER BY o) FROM unnest(r.model_ids) WITH ORDINALITY AS u(m, o))
                AS model_ids_hex
            FROM crynux.relay_tasks r WHERE r.job_id = ANY($1::bigint[]) ORDER BY r.job_id, r.attempt, r.member
            """, ["{" + jobIds.map(String.init).joined(separator: ",") + "}"]).map(RelayTaskRecord.init)
        return Dictionary(grouping: records, by: \.jobId)
    }

    /// Inserts prepared tasks (a row already there is left as it is: the same commitment is the
    /// same task) and applies changes, inside the caller's transaction.
    static func writeRelayTasks(_ db: PostgresConnection, prepared: [RelayTaskRecord], changes: [RelayTaskChange]) throws {
        for task in prepared {
            // A job's own task is a new payment; a validation group's two more complete one.
            if task.member == 0 { try checkBudgets(db, wallet: task.wallet, amount: task.taskFee) }
            try db.execute("""
                INSERT INTO crynux.relay_tasks (commitment, job_id, attempt, member, wallet_address, task_id, nonce, task_type,
                    task_fee_wei, min_vram, required_gpu, required_gpu_vram, task_version, task_size, model_ids, prepared_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::numeric, $10, $11, $12, $13, $14,
                        ARRAY(SELECT jsonb_array_elements_text($15::jsonb)), clock_timestamp())
                ON CONFLICT (commitment) DO NOTHING
                """, [task.commitment.hex, task.jobId, try int32(task.attempt, "attempt"), try int32(task.member, "member"),
                      task.wallet.bytes.hex, task.taskId.hex, task.nonce.hex, Int32(task.taskType), task.taskFee.description,
                      try int64(task.minVram, "min_vram"), task.requiredGPU, try int64(task.requiredGPUVram, "required_gpu_vram"),
                      task.taskVersion, try int64(task.taskSize, "task_size"), jsonArray(task.modelIds)])
        }
        for change in changes {
            var params: [(any PostgresEncodable)?] = [change.commitment.hex]
            var sets: [String] = []
            func set(_ column: String, _ value: (any PostgresEncodable)?) {
                guard let value else { return }
                params.append(value)
                sets.append("\(column) = $\(params.count)")
            }
            if change.created { sets.append("created_at = coalesce(created_at, now())") }
            set("sequence", try change.sequence.map { try int64($0, "sequence") })
            set("sampling_seed", change.samplingSeed?.hex)
            set("relay_status", change.relayStatus.map { Int32($0) })
            set("abort_reason", change.abortReason.map { Int32($0) })
            set("selected_node", change.selectedNode?.checksummed)
            set("relay_timeout", try change.relayTimeout.map { try int64($0, "timeout") })
            set("score_ready_at", change.scoreReadyAt)
            set("vrf_proof", change.vrfProof?.hex)
            set("vrf_selected", change.vrfSelected)
            if change.validated { sets.append("validated_at = coalesce(validated_at, now())") }
            if change.cancelSent { sets.append("cancel_sent_at = coalesce(cancel_sent_at, now())") }
            if change.ended { sets.append("ended_at = coalesce(ended_at, now())") }
            guard !sets.isEmpty else { continue }
            try db.execute("UPDATE crynux.relay_tasks SET \(sets.joined(separator: ", ")) WHERE commitment = $1", params)
        }
    }

    /// A JSON array of strings, for `jsonb_array_elements_text` (the store has no JSON library).
    static func jsonArray(_ strings: [String]) -> String {
        "[" + strings.map { s in
            var out = "\""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }.joined(separator: ",") + "]"
    }
}
