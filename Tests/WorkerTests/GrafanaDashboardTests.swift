import Foundation
import StrictJSON
import Testing

/// The Grafana dashboard in the repository reads only series the worker exports: a renamed
/// metric fails here, not on an operator's empty panel.
@Suite("Grafana dashboard")
struct GrafanaDashboardTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func everyQueryUsesASeriesTheWorkerExports() throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent("scripts/grafana/crynux-worker.json"), encoding: .utf8)
        let dashboard = try JSON.parse(text)
        let panels = try #require(dashboard["panels"]?.arrayValue)
        let expressions = panels.flatMap { $0["targets"]?.arrayValue ?? [] }.compactMap { $0["expr"]?.stringValue }
        #expect(expressions.count >= 20)

        // Every `label: "crynux_…"` in the sources: the series swift-metrics records.
        var exported: Set<String> = []
        let sources = Self.root.appendingPathComponent("Sources")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
        let label = try Regex(#"label: "(crynux_[a-z_]+)""#)
        for file in files where file.pathExtension == "swift" {
            for match in try String(contentsOf: file, encoding: .utf8).matches(of: label) {
                if let name = match.output[1].substring { exported.insert(String(name)) }
            }
        }
        #expect(exported.count >= 18)

        let used = try Regex(#"crynux_[a-z_]+"#)
        var seen: Set<String> = []
        for expression in expressions {
            for match in expression.matches(of: used) {
                var name = String(expression[match.range])
                for suffix in ["_bucket", "_sum", "_count"] where !exported.contains(name) && name.hasSuffix(suffix) {
                    name = String(name.dropLast(suffix.count))
                }
                #expect(exported.contains(name), "\(name) in \(expression) is not a series the worker exports")
                seen.insert(name)
            }
        }
        // And the dashboard shows each of them but the raw HTTP count.
        #expect(exported.subtracting(seen) == ["crynux_rpc_http_requests_total"], "\(exported.subtracting(seen))")
    }
}
