/// Which stable-diffusion-task JSON schema the target network's Relay checks uploads against. The
/// era-D Relay (crynux-relay@969e500, config `task_schema.stable_diffusion_inference`) downloads the
/// schema from the task repository's main branch when it starts, so the version it enforces is the
/// one current then: @68b52d2 from 2024-06-06 (most of era D), @8fcf6e7 from 2024-08-13. The live
/// network's Relay ("Lithium", crynux-relay@24ffc26) fetches it from main as well, where the file
/// last changed in @1c3cd8c (2025-07-07): `.lithium`.
public enum SDSchema: String, Sendable, CaseIterable {
    /// `base_model` is a string; no `version`, `unet`, `scheduler`, `lora.weight_file_name`,
    /// `refiner.variant`; `cfg` from 1.
    case v68b52d2 = "68b52d2"
    /// Adds the `{"name", "variant"}` form of `base_model`, `version`, `unet`, `scheduler`; `cfg` from 0.
    case v8fcf6e7 = "8fcf6e7"
    /// stable-diffusion-task@1c3cd8c (main @4088ef8 when crynux-relay@24ffc26 was current; the same
    /// file at tags v3.1.0–v3.5.0): adds `dtype`, versions 2.5.0 and 2.5.2, any number for `cfg`, no
    /// image size bounds, optional `controlnet.image_dataurl`, `controlnet.variant`, a null
    /// `refiner.variant`, and typed scheduler and ControlNet preprocess args. Only for the Lithium
    /// network: older Relays refuse much of what it accepts. The rules, and the three points where
    /// this code is stricter than that schema (tasks the nodes would fail), are in LithiumArguments.swift.
    case lithium = "lithium"

    /// What the era-D Relay enforced for most of its life.
    public static let eraDDefault: SDSchema = .v68b52d2
    /// What the Hydrogen Relay (crynux-relay@fa0afaa) enforced: stable-diffusion-task@c0d652a's
    /// schema, whose file is byte-identical at @68b52d2.
    public static let hydrogenDefault: SDSchema = .v68b52d2
    /// What the Lithium Relay (crynux-relay@24ffc26) enforces.
    public static let lithiumDefault: SDSchema = .lithium
}

/// The typed view of Stable Diffusion task arguments, with the schema defaults applied. The rules are
/// those of the schema the target network's Relay applies (`SDSchema`): the Relay refuses anything
/// else after the task is paid for. Unknown keys are allowed and ignored, as in the schema, except
/// keys a later schema gives a meaning to: nodes of an older network would silently ignore them and
/// return something else than what was asked (and paid) for, so they are refused.
public struct StableDiffusionArguments: Sendable, Equatable {
    /// "2.5.0" and "2.5.2" came with later schemas (2025) that era-D nodes do not know.
    public static let versions = ["1.0.0", "2.0.0", "2.1.0"]
    /// The versions of the Lithium schema (`.lithium`); the nodes default to 2.5.0.
    public static let lithiumVersions = versions + ["2.5.0", "2.5.2"]
    /// `dtype` of the Lithium schema (absent: "auto").
    public static let dtypes = ["float16", "bfloat16", "float32", "auto"]

    public struct BaseModel: Sendable, Equatable {
        public let name: String
        /// Only in the object form (`{"name": …, "variant": …}`); nil when absent or null.
        public let variant: String?
    }

    public struct TaskConfig: Sendable, Equatable {
        /// Era D only: the Lithium schema has no bounds on the image size.
        public static let imageSizeRange: ClosedRange<Int64> = 64...2048
        public static let defaultNumImages = 6

        public var imageWidth: Int = 512
        public var imageHeight: Int = 512
        /// nil: the node's default (25 in the 1.x schema, 1 from the 2.x schema on).
        public var steps: Int?
        public var seed: Int = 0
        public var numImages: Int = TaskConfig.defaultNumImages
        public var safetyChecker: Bool = true
        /// An integer in the era-D schema; any number from 0 to 20 (7.5) in the Lithium schema.
        public var cfg: Double = 5
    }

    public enum SchedulerMethod: String, Sendable, CaseIterable {
        case dpmSolverMultistep = "DPMSolverMultistepScheduler"
        case eulerAncestralDiscrete = "EulerAncestralDiscreteScheduler"
        case lcm = "LCMScheduler"
    }

    public struct Lora: Sendable, Equatable {
        public let model: String
        public let weightFileName: String
        public let weight: Int
    }

    public struct ControlNet: Sendable, Equatable {
        public static let preprocessMethods = [
            "canny", "scribble_hed", "scribble_hedsafe", "softedge_hedsafe", "depth_midas", "mlsd", "openpose",
            "openpose_face", "openpose_faceonly", "openpose_full", "openpose_hand", "scribble_pidinet",
            "softedge_pidinet", "scribble_pidisafe", "softedge_pidisafe", "normal_bae", "lineart_coarse",
            "lineart_realistic", "lineart_anime", "depth_zoe", "depth_leres", "depth_leres++", "shuffle",
            "mediapipe_face",
        ]
        public let model: String
        /// Required and non-empty in era D and here for Lithium too (its schema lets it be absent or
        /// empty, but the node then fails the task: see LithiumArguments.swift).
        public let imageDataURL: String
        public let weight: Int
        public let preprocessMethod: String?
        /// Lithium schema only (string or null); nil when absent or null.
        public var variant: String? = nil
    }

    public struct Refiner: Sendable, Equatable {
        public let model: String
        /// "fp16" when absent in era D; the Lithium schema also takes null (nil; the node's default).
        public let variant: String?
        public let denoisingCutoff: Int
        public let steps: Int
    }

    /// As given; nil when absent (the node then applies the schema's default version).
    public var version: String?
    public var baseModel: BaseModel
    /// Lithium schema only; nil when absent (the node then uses "auto").
    public var dtype: String?
    public var prompt: String
    public var negativePrompt: String = ""
    public var taskConfig: TaskConfig
    /// nil when absent (the node then uses DPMSolverMultistepScheduler).
    public var scheduler: SchedulerMethod?
    public var lora: Lora?
    public var controlnet: ControlNet?
    public var refiner: Refiner?
    public var vae: String = ""
    public var textualInversion: String = ""
    public var unet: String = ""

    /// GPU memory in GB the task needs, by base model (the Crynux SDK and bridge rules of era D and
    /// Hydrogen: `crynux-ai/…` names, matched exactly). The Lithium rule is `lithiumMinVram`.
    public var vramLimit: UInt64 {
        switch baseModel.name {
        case "crynux-ai/stable-diffusion-v1-5": 8
        case "crynux-ai/sdxl-turbo", "crynux-ai/stable-diffusion-xl-base-1.0": 14
        default: 10
        }
    }

    public init(parsing arguments: String, schema: SDSchema = .eraDDefault) throws(TaskArgumentsError) {
        try self.init(root: TaskArguments.parseRoot(arguments), schema: schema)
    }

    init(root r: FieldReader, schema: SDSchema) throws(TaskArgumentsError) {
        if schema == .lithium {
            self = try Self(lithium: r)
            return
        }
        let objectForm = schema == .v8fcf6e7
        if schema == .v68b52d2 {
            for key in ["version", "unet", "scheduler"] where r.object[key] != nil {
                throw Self.unknownToSchema(r, key, schema)
            }
        }
        version = try r.oneOf("version", Self.versions)

        let expectedBase = objectForm ? #"a non-empty string or an object {"name": …}"# : "a non-empty string"
        guard let base = r.object["base_model"] else {
            throw r.missing("base_model", expected: expectedBase)
        }
        switch base {
        case .string(let s) where !s.isEmpty:
            baseModel = BaseModel(name: s, variant: nil)
        case .object(let o) where objectForm:
            let b = FieldReader(o, path: r.fieldPath("base_model"))
            baseModel = BaseModel(name: try b.requiredString("name", nonEmpty: true),
                                  variant: try b.string("variant", nullable: true))
        case .object:
            throw r.fail("base_model", "must be \(expectedBase): the network's schema (stable-diffusion-task@\(schema.rawValue)) has no object form, and its Relay would refuse the task after it is paid for")
        default:
            throw r.mismatch("base_model", expected: expectedBase, got: base)
        }

        prompt = try r.requiredString("prompt", nonEmpty: true)
        negativePrompt = try r.string("negative_prompt") ?? ""

        guard r.object["task_config"] != nil else {
            throw r.missing("task_config", expected: "an object such as {\"num_images\": 1}")
        }
        taskConfig = try Self.taskConfig(r.nested("task_config")!, schema: schema)

        if let s = try r.nested("scheduler") {
            scheduler = SchedulerMethod(rawValue: try s.requiredOneOf("method", SchedulerMethod.allCases.map(\.rawValue)))
            _ = try s.nested("args", nullable: true)
        }

        if let l = try r.nested("lora", nullable: true) {
            if schema == .v68b52d2, l.object["weight_file_name"] != nil { throw Self.unknownToSchema(l, "weight_file_name", schema) }
            lora = Lora(model: try l.requiredString("model", nonEmpty: true),
                        weightFileName: try l.string("weight_file_name") ?? "",
                        weight: Int(try l.integer("weight", in: 1...100) ?? 100))
        }

        if let c = try r.nested("controlnet", nullable: true) {
            let model = try c.requiredString("model", nonEmpty: true)
            let image = try c.requiredString("image_dataurl", nonEmpty: true)
            let weight = Int(try c.integer("weight", in: 1...100) ?? 70)
            var method: String?
            if let p = try c.nested("preprocess", nullable: true) {
                method = try p.requiredOneOf("method", ControlNet.preprocessMethods)
                _ = try p.nested("args", nullable: true)
            }
            controlnet = ControlNet(model: model, imageDataURL: image, weight: weight, preprocessMethod: method)
        }

        if let f = try r.nested("refiner", nullable: true) {
            if schema == .v68b52d2, f.object["variant"] != nil { throw Self.unknownToSchema(f, "variant", schema) }
            refiner = Refiner(model: try f.requiredString("model", nonEmpty: true),
                              variant: try f.string("variant") ?? "fp16",
                              denoisingCutoff: Int(try f.integer("denoising_cutoff", in: 1...100) ?? 80),
                              steps: Int(try f.integer("steps", in: 1...100) ?? 20))
        }

        vae = try r.string("vae") ?? ""
        textualInversion = try r.string("textual_inversion") ?? ""
        unet = try r.string("unet") ?? ""
    }

    private static func unknownToSchema(_ r: FieldReader, _ key: String, _ schema: SDSchema) -> TaskArgumentsError {
        r.fail(key, "is not part of the network's schema (stable-diffusion-task@\(schema.rawValue)): its nodes would ignore it; remove it, or choose the network's newer schema")
    }

    private static func taskConfig(_ t: FieldReader, schema: SDSchema) throws(TaskArgumentsError) -> TaskConfig {
        var config = TaskConfig()
        let sizes = TaskConfig.imageSizeRange
        for key in ["image_width", "image_height"] {
            let expected = "a multiple of 8 from \(sizes.lowerBound) to \(sizes.upperBound)"
            guard let v = try t.integer(key, in: sizes, expected: expected) else { continue }
            guard v % 8 == 0 else { throw t.mismatch(key, expected: expected, got: t.object[key]!) }
            if key == "image_width" { config.imageWidth = Int(v) } else { config.imageHeight = Int(v) }
        }
        if let v = try t.integer("steps", in: 1...100) { config.steps = Int(v) }
        if let v = try t.integer("seed", in: 0...2_147_483_647) { config.seed = Int(v) }
        if let v = try t.integer("num_images", in: 1...10) { config.numImages = Int(v) }
        if let v = try t.bool("safety_checker") { config.safetyChecker = v }
        // 68b52d2: exclusiveMinimum 0; 8fcf6e7: minimum 0.
        if let v = try t.integer("cfg", in: schema == .v68b52d2 ? 1...20 : 0...20) { config.cfg = Double(v) }
        return config
    }
}
