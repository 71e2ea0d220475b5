// libFuzzer entry point for the strict JSON parser and the Go-JSON encoder (scripts/fuzz builds
// it together with Sources/StrictJSON and Sources/Crynux/GoJSON.swift). Whatever the bytes:
// no crash, and what parses serializes and parses back to the same value; and any string quoted
// the Go way parses back to itself at the length the encoder predicts.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let value = try? JSON.parse(bytes: bytes) {
        let again = try? JSON.parse(bytes: value.serialized())
        if again != value { fatalError("serialize/parse round trip changed \(value)") }
    }
    let text = String(decoding: bytes, as: UTF8.self)
    let quoted = GoJSON.quote(text)
    if quoted.utf8.count != GoJSON.quotedLength(text) { fatalError("quotedLength disagrees for \(quoted)") }
    guard case .string(let back)? = try? JSON.parse(quoted), back == text else {
        fatalError("Go-quoted string does not parse back: \(quoted)")
    }
    return 0
}
