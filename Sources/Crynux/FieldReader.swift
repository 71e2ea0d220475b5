import Ethereum
import StrictJSON
/// Reads typed fields out of a JSON object and turns every mismatch into a `TaskArgumentsError`
/// naming the full field path.
struct FieldReader {
    let object: JSONObject
    let path: String

    init(_ object: JSONObject, path: String) {
        self.object = object
        self.path = path
    }

    /// Wraps a value that must be an object.
    init(value: JSON, path: String) throws(TaskArgumentsError) {
        guard case .object(let o) = value else {
            throw TaskArgumentsError(field: path, message: "must be an object (got \(value.brief))")
        }
        self.init(o, path: path)
    }

    func fieldPath(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    func fail(_ key: String, _ message: String) -> TaskArgumentsError {
        TaskArgumentsError(field: fieldPath(key), message: message)
    }

    func missing(_ key: String, expected: String) -> TaskArgumentsError {
        fail(key, "is missing (expected \(expected))")
    }

    func mismatch(_ key: String, expected: String, got: JSON) -> TaskArgumentsError {
        fail(key, "must be \(expected) (got \(got.brief))")
    }

    // MARK: strings

    func string(_ key: String, nonEmpty: Bool = false, nullable: Bool = false) throws(TaskArgumentsError) -> String? {
        guard let value = object[key] else { return nil }
        let expected = (nonEmpty ? "a non-empty string" : "a string") + (nullable ? " or null" : "")
        switch value {
        case .string(let s) where !nonEmpty || !s.isEmpty: return s
        case .null where nullable: return nil
        default: throw mismatch(key, expected: expected, got: value)
        }
    }

    func requiredString(_ key: String, nonEmpty: Bool = false) throws(TaskArgumentsError) -> String {
        guard object[key] != nil else {
            throw missing(key, expected: nonEmpty ? "a non-empty string" : "a string")
        }
        return try string(key, nonEmpty: nonEmpty)!
    }

    func oneOf(_ key: String, _ allowed: [String]) throws(TaskArgumentsError) -> String? {
        guard let value = object[key] else { return nil }
        if case .string(let s) = value, allowed.contains(s) { return s }
        throw mismatch(key, expected: "one of " + allowed.map { "\"\($0)\"" }.joined(separator: ", "), got: value)
    }

    func requiredOneOf(_ key: String, _ allowed: [String]) throws(TaskArgumentsError) -> String {
        guard object[key] != nil else {
            throw missing(key, expected: "one of " + allowed.map { "\"\($0)\"" }.joined(separator: ", "))
        }
        return try oneOf(key, allowed)!
    }

    // MARK: numbers

    /// An integer in `range`; `6.0` counts as 6 (as in JSON Schema), `1.5` and `true` do not.
    func integer(_ key: String, in range: ClosedRange<Int64>, expected: String? = nil,
                 nullable: Bool = false) throws(TaskArgumentsError) -> Int64? {
        guard let value = object[key] else { return nil }
        if case .null = value, nullable { return nil }
        let expectation = (expected ?? Self.describe(range)) + (nullable ? ", or null" : "")
        guard case .number(let n) = value, let i = n.integerValue, range.contains(i) else {
            throw mismatch(key, expected: expectation, got: value)
        }
        return i
    }

    static func describe(_ range: ClosedRange<Int64>) -> String {
        if range.upperBound == Int64.max { return "an integer of at least \(range.lowerBound)" }
        return "an integer from \(range.lowerBound) to \(range.upperBound)"
    }

    /// A finite number accepted by `isValid`; `expected` describes the accepted values.
    func number(_ key: String, expected: String, _ isValid: (Double) -> Bool) throws(TaskArgumentsError) -> Double? {
        guard let value = object[key] else { return nil }
        guard case .number(let n) = value, isValid(n.value) else {
            throw mismatch(key, expected: expected, got: value)
        }
        return n.value
    }

    // MARK: other types

    func bool(_ key: String) throws(TaskArgumentsError) -> Bool? {
        guard let value = object[key] else { return nil }
        guard case .bool(let b) = value else { throw mismatch(key, expected: "true or false", got: value) }
        return b
    }

    /// A nested object (nil when absent, or when null and `nullable`).
    func nested(_ key: String, nullable: Bool = false) throws(TaskArgumentsError) -> FieldReader? {
        guard let value = object[key] else { return nil }
        switch value {
        case .object(let o): return FieldReader(o, path: fieldPath(key))
        case .null where nullable: return nil
        default: throw mismatch(key, expected: nullable ? "an object or null" : "an object", got: value)
        }
    }
}
