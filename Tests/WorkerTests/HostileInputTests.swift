import BigInt
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing
@testable import Worker

/// A corpus of hostile task arguments (`HostileInput/`, expectations in `expectations.tsv`),
/// submitted the way a user would (`crynux-worker submit`) and run through the stage machine:
/// each ends with a clear reason at submit time or as a failed job naming the field, spends
/// nothing unless valid, and never stops the worker.
@Suite("Hostile input")
struct HostileInputTests {
    struct Case {
        let file: URL
        let kind: String
        let expected: String
    }

    static func corpus() throws -> [Case] {
        guard let folder = Bundle.module.url(forResource: "HostileInput", withExtension: nil) else {
            throw TestSetupError("the HostileInput corpus is missing from the test bundle")
        }
        let table = try String(contentsOf: folder.appendingPathComponent("expectations.tsv"), encoding: .utf8)
        return table.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let fields = line.split(separator: "\t", maxSplits: 1).map(String.init)
            let file = folder.appendingPathComponent(fields[0])
            return Case(file: file, kind: file.pathExtension, expected: fields[1])
        }
    }

    @Test func everyCaseEndsWithAClearReasonAndSpendsNothingUnlessValid() throws {
        let cases = try Self.corpus()
        #expect(cases.count >= 40)
        let h = try StageHarness()
        var submitted: [(Case, Int64)] = []
        for item in cases {
            let result = try Products.runWorker(["submit", "--kind", item.kind, "--file", item.file.path],
                                                environment: ["DATABASE_URL": h.database.url])
            if item.expected.hasPrefix("submit:") {
                #expect(result.status != 0 && result.output.contains(item.expected.dropFirst("submit:".count)),
                        "\(item.file.lastPathComponent): \(result.output)")
                continue
            }
            let id = try #require(Int64(result.output.trimmingCharacters(in: .whitespacesAndNewlines)),
                                  "\(item.file.lastPathComponent): \(result.output)")
            submitted.append((item, id))
        }
        #expect(try h.db.query("SELECT count(*) FROM crynux.jobs")[0].get(0, as: Int64.self) == Int64(submitted.count))
        // One worker's pipeline takes them all, claim after claim.
        for (_, id) in submitted { try h.runOnce(id) }
        var valid: UInt64 = 0
        for (item, id) in submitted {
            let job = try h.job(id)
            let name = item.file.lastPathComponent
            if item.expected == "valid" {
                valid += 1
                #expect(job.status == .pending && job.txNonce != nil, "\(name): \(job.status) \(job.lastError ?? "")")
                #expect(try h.transactions(id).count == 1, "\(name)")
            } else {
                let field = item.expected.dropFirst("field:".count)
                #expect(job.status == .failed && job.lastError?.hasPrefix("invalid task arguments: \(field): ") == true,
                        "\(name): \(job.status) \(job.lastError ?? "")")
                #expect(try h.transactions(id).isEmpty, "\(name)")
            }
        }
        // Nothing was spent on the invalid ones: the wallet signed exactly one createTask per valid case.
        #expect(try h.walletNonce() == valid)
        #expect(valid >= 8)
    }

    @Test func argumentsBeyondTheRelaysBodyAndImpossibleNumbersAreRefused() throws {
        let h = try StageHarness()
        // Over the Relay's 32 MiB request body once escaped: refused before any money moves.
        let huge = #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":""# + String(repeating: "<", count: 6 << 20) + #"","task_config":{}}"#
        let id = try h.submit(huge)
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError?.contains("32 MiB") == true, "\(job.lastError ?? "")")
        #expect(try h.transactions(id).isEmpty)
        // What the schema itself refuses at submission, from plain SQL.
        for (fee, vram) in [("NaN", "8"), ("-1", "8"), ("1", "-4"), ("1", "0")] {
            let error = try #require(throws: PostgresError.self) {
                try h.db.query("SELECT crynux.submit_job('sd', '{}', p_fee_wei => $1::numeric, p_vram_limit => $2::integer)", [fee, vram])
            }
            #expect(error.sqlState == "23514", "fee \(fee), vram \(vram): \(error)")
        }
        // And from the command line: a fee that is not a whole number never reaches the database.
        let cli = try Products.runWorker(["submit", "--kind", "sd", "--fee-wei", "-5"], environment: ["DATABASE_URL": h.database.url],
                                         stdin: "{}")
        #expect(cli.status != 0 && cli.output.contains("--fee-wei"))
    }

    @Test func argumentsThatCanNeverBeSentAreNotEvenLoaded() throws {
        let h = try StageHarness()
        let big = #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":""# + String(repeating: "x", count: 32 << 20)
            + #"","task_config":{}}"#
        let id = try h.submit(big)
        // A claim at create reads their size, not them (8 such rows would be held twice over).
        let claimed = try #require(try JobStore.claim(h.db, worker: "probe", limit: 1, leaseSeconds: 60).first)
        #expect(claimed.id == id && claimed.taskArgs == nil && claimed.taskArgsBytes == Int64(big.utf8.count))
        try h.db.execute("UPDATE crynux.jobs SET locked_by = NULL, locked_until = NULL")
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError == "invalid task arguments: task_args: must fit in the Relay's 32 MiB request limit (got \(big.utf8.count) bytes)")
        #expect(try h.transactions(id).isEmpty)
        // Arguments within the limit still come with the claim.
        let fine = try h.submit()
        let again = try #require(try JobStore.claim(h.db, worker: "probe", limit: 1, leaseSeconds: 60).first)
        #expect(again.id == fine && again.taskArgs != nil)
    }
}
