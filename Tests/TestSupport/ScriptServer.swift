import Foundation

/// A throwaway server written as a Python script, on 127.0.0.1 with an OS-chosen port. The script
/// prints its port on the first line and exits when our stdin closes, so a crashed test run
/// leaves nothing behind.
public final class ScriptServer: @unchecked Sendable {
    public let process = Process()
    private let stdinPipe = Pipe()
    public let port: Int

    public init(script: String, arguments: [String] = []) throws {
        let stdoutPipe = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", "-c", script] + arguments
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        try process.run()
        var line = [UInt8]()
        while let byte = stdoutPipe.fileHandleForReading.readData(ofLength: 1).first, byte != UInt8(ascii: "\n") {
            line.append(byte)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self)) else {
            process.terminate()
            throw TestSetupError("the test server did not report its port")
        }
        self.port = port
    }

    public func stop() {
        try? stdinPipe.fileHandleForWriting.close()
        process.terminate()
        process.waitUntilExit()
    }

    deinit { if process.isRunning { stop() } }
}

/// A port nothing listens on: bind, read the port, close.
public func closedPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
    }
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}
