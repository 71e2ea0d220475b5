import ArgumentParser
import Foundation
import JobQueue

struct Results: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "results",
        abstract: "Write stored results to files: job-<id>-<index>.png (SD) or .json (GPT).",
        discussion: """
            Prints each path written. Examples:
              crynux-worker results --out ./results 42 43
              crynux-worker results --out ./all      # every stored result
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Folder to write into (created if missing).") var out: String
    @Argument(help: "Job ids (default: every succeeded job).") var ids: [Int64] = []

    func run() throws {
        let db = try database.connect()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for (job, file) in try JobStore.results(db, jobIds: ids) {
            let ext = file.contentType == "image/png" ? "png" : file.contentType == "application/json" ? "json" : "bin"
            let path = (out as NSString).appendingPathComponent("job-\(job)-\(file.index).\(ext)")
            try Data(file.data).write(to: URL(fileURLWithPath: path))
            print(path)
        }
    }
}
