import Ethereum
import StrictJSON

public enum TaskArguments {
    /// Parses and validates the exact argument string; never changes it (the Relay gets the same bytes,
    /// and the task hash is taken over them).
    /// `sdSchema`: the stable-diffusion-task schema the target network's Relay enforces. `.lithium`
    /// selects the Lithium Relay's rules for both kinds (GPT: gpt-task v3.1.0, `LithiumGPTArguments`)
    /// and the Lithium minimum VRAM (`lithiumSpec(kind:arguments:)` gives the other create fields).
    public static func validate(kind: TaskKind, arguments: String, sdSchema: SDSchema) throws(TaskArgumentsError) -> ValidatedTask {
        if sdSchema == .lithium {
            let spec = try lithiumSpec(kind: kind, arguments: arguments)
            return ValidatedTask(kind: kind, cap: spec.taskSize, vramLimit: spec.minVram, resultCount: spec.resultCount,
                                 taskHash: taskHash(arguments))
        }
        let root = try parseRoot(arguments)
        let cap: UInt64
        let vramLimit: UInt64
        switch kind {
        case .sd:
            let sd = try StableDiffusionArguments(root: root, schema: sdSchema)
            cap = UInt64(sd.taskConfig.numImages)
            vramLimit = sd.vramLimit
        case .gpt:
            let gpt = try GPTArguments(root: root)
            cap = 1
            vramLimit = gpt.vramLimit
        }
        return ValidatedTask(kind: kind, cap: cap, vramLimit: vramLimit, resultCount: Int(cap),
                             taskHash: taskHash(arguments))
    }

    /// keccak256 of the UTF-8 bytes of the argument string, as the Relay computes it.
    public static func taskHash(_ arguments: String) -> [UInt8] {
        keccak256(Array(arguments.utf8))
    }

    /// The Relay refuses request bodies over 32 MiB; the arguments travel in it as an escaped JSON string.
    public static let maxEncodedSize = (32 << 20) - 4096

    static func parseRoot(_ arguments: String) throws(TaskArgumentsError) -> FieldReader {
        let encoded = GoJSON.quotedLength(arguments)
        guard encoded <= maxEncodedSize else {
            throw TaskArgumentsError(field: "task_args", message:
                "must fit in the Relay's 32 MiB request limit (got \(arguments.utf8.count) bytes, \(encoded) once escaped)")
        }
        let value: JSON
        do {
            value = try JSON.parse(arguments)
        } catch {
            throw TaskArgumentsError(field: "task_args", message: "must be valid JSON (\(error))")
        }
        guard case .object(let object) = value else {
            throw TaskArgumentsError(field: "task_args", message: "must be a JSON object (got \(value.brief))")
        }
        return FieldReader(object, path: "")
    }
}
