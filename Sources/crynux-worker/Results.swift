import ArgumentParser
import Foundation
import Postgres

struct Results: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "results",
        abstract: "Write stored results to files: job-<id>-<index>.png (SD) or .json (GPT).")
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Folder to write into (created if missing).") var out: String
    @Argument(help: "Job ids (default: every succeeded job).") var ids: [Int64] = []

    func run() throws {
        let db = try database.connect()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let rows = ids.isEmpty
            ? try db.query("SELECT job_id, result_index, content_type, data FROM crynux.job_results ORDER BY job_id, result_index")
            : try db.query("SELECT job_id, result_index, content_type, data FROM crynux.job_results WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, result_index",
                           ["{" + ids.map(String.init).joined(separator: ",") + "}"])
        for row in rows {
            let job: Int64 = try row.get("job_id")
            let index: Int = try row.get("result_index")
            let type: String = try row.get("content_type")
            let ext = type == "image/png" ? "png" : type == "application/json" ? "json" : "bin"
            let path = (out as NSString).appendingPathComponent("job-\(job)-\(index).\(ext)")
            try Data(try row.get("data", as: [UInt8].self)).write(to: URL(fileURLWithPath: path))
            print(path)
        }
    }
}
