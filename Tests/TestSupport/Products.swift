import Foundation

public enum Products {
    /// The folder holding the built products (the test bundle lives there too).
    public static var directory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    }

    /// The built `crynux-worker` executable; fails loudly when it is not there.
    public static func worker() throws -> URL {
        let url = directory.appendingPathComponent("crynux-worker")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw TestSetupError("crynux-worker is not built at \(url.path): run swift build (scripts/test does)")
        }
        return url
    }

    /// Runs `crynux-worker` with `arguments` and the given environment additions; returns exit code and output.
    public static func runWorker(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) throws
        -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = try worker()
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let input = Pipe()
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
