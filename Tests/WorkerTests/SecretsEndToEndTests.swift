import Ethereum
import Foundation
import JobQueue
import TestSupport
import Testing

/// Secrets never reach a log, a row or another process: the key leaves the environment once
/// read, no core dump is written, and URL paths and queries (API keys) are never printed.
@Suite("Secrets stay secret (end to end)")
struct SecretsEndToEndTests {
    @Test func theKeyLeavesTheEnvironmentAndNoCoreDumpIsWritten() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let worker = try harness.startWorker(name: "secret")
        #expect(worker.waitForOutput(containing: "started:", timeout: 60), "\(worker.output)")
        let pid = worker.process.processIdentifier
        let environment = try #require(FileManager.default.contents(atPath: "/proc/\(pid)/environ"))
        let secret = harness.key.hexForTests.replacingOccurrences(of: "0x", with: "")
        #expect(!String(decoding: environment, as: UTF8.self).contains(secret))
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let core = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") })
        #expect(core.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).first == "0", "\(core)")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
        #expect(!worker.output.contains(secret))
    }

    @Test func anAPIKeyInTheRPCURLIsNeverPrinted() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let url = "http://user:hunter2@127.0.0.1:\(closedPort())/v3/path-api-key?apikey=query-api-key"
        let worker = try harness.startWorker(name: "redacted", extra: ["--rpc-url", url])
        #expect(worker.waitForOutput(containing: "retrying", timeout: 60), "\(worker.output)")
        worker.signal(SIGTERM)
        _ = worker.wait(timeout: 60)
        for secret in ["hunter2", "path-api-key", "query-api-key"] { #expect(!worker.output.contains(secret), "\(worker.output)") }
        #expect(worker.output.contains("http://127.0.0.1:"))
    }
}
