import ArgumentParser
import Foundation
import JobQueue
import Postgres

struct Wait: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Block until the jobs end, print their outcome, and exit by it.",
        discussion: """
            Listens on crynux_job_finished (no polling), then reads the jobs once, so that a job
            that ended before the LISTEN is not missed. Exit codes: 0 every job succeeded; 4 one
            or more failed; 5 one or more were cancelled (none failed); 6 the timeout passed with
            jobs still pending; 3 no such job (nothing is waited for); 1 the database did not
            answer. Examples:
              crynux-worker wait 42 43
              crynux-worker wait 42 --timeout 30m --json
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "How long to wait: a number and a unit (90s, 10m, 2h, 1d).", transform: Prune.seconds)
    var timeout: Double = 600
    @Flag(help: "One JSON array of {id, status, kind, results, last_error} instead of lines.") var json = false
    @Argument(help: "Job ids.") var ids: [Int64]

    static let failedExit: Int32 = 4, cancelledExit: Int32 = 5, timedOutExit: Int32 = 6

    func validate() throws {
        guard !ids.isEmpty else { throw ValidationError("name at least one job id") }
    }

    func run() throws {
        let db = try database.connect()
        try db.listen(JobStore.jobFinishedChannel)
        var outcomes = try JobStore.outcomes(db, ids: ids)
        if let missing = ids.first(where: { outcomes[$0] == nil }) { throw noSuchJob(missing) }
        let deadline = Date().addingTimeInterval(timeout)
        var waiting = Set(ids.filter { outcomes[$0]?.ended == false })
        while !waiting.isEmpty {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { break }
            guard let note = try db.waitForNotification(timeout: remaining) else { continue }
            // The payload names the job; the row is read again (the payload is a hint, the row the truth).
            let payload = try? JSONSerialization.jsonObject(with: Data(note.payload.utf8)) as? [String: Any]
            let id = (payload?["id"] as? NSNumber)?.int64Value
            guard let id, waiting.contains(id) else { continue }
            for (id, outcome) in try JobStore.outcomes(db, ids: [id]) {
                outcomes[id] = outcome
                if outcome.ended { waiting.remove(id) }
            }
        }
        let ordered = ids.compactMap { outcomes[$0] }
        if json {
            let array = ordered.map { o -> [String: Any] in
                var entry: [String: Any] = ["id": o.id, "status": o.status, "kind": o.kind, "results": o.results]
                entry["last_error"] = o.lastError ?? NSNull()
                return entry
            }
            print(String(decoding: try JSONSerialization.data(withJSONObject: array, options: [.sortedKeys]), as: UTF8.self))
        } else {
            for o in ordered {
                switch o.status {
                case JobStatus.succeeded.rawValue: print("\(o.id) succeeded (\(o.results) result\(o.results == 1 ? "" : "s"))")
                case JobStatus.pending.rawValue: print("\(o.id) still pending after \(formatSeconds(timeout))")
                default: print("\(o.id) \(o.status): \(o.lastError ?? "")")
                }
            }
        }
        let statuses = Set(ordered.map(\.status))
        if statuses.contains(JobStatus.pending.rawValue) { throw ExitCode(Self.timedOutExit) }
        if statuses.contains(JobStatus.failed.rawValue) { throw ExitCode(Self.failedExit) }
        if statuses.contains(JobStatus.cancelled.rawValue) { throw ExitCode(Self.cancelledExit) }
    }
}

private func formatSeconds(_ seconds: Double) -> String {
    seconds >= 3600 && seconds.truncatingRemainder(dividingBy: 3600) == 0 ? "\(Int(seconds / 3600))h"
        : seconds >= 60 && seconds.truncatingRemainder(dividingBy: 60) == 0 ? "\(Int(seconds / 60))m" : "\(Int(seconds))s"
}
