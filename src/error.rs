//! Typed errors that carry what the user needs to act.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A tensor the model needs is not in the weights.
    #[error("missing tensor `{0}` in the weights")]
    MissingTensor(String),
    /// A tensor is present with the wrong shape.
    #[error("tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },
    /// Tensors in the weights that the model did not use (a wrong config or a wrong file).
    #[error("{} unexpected tensor(s) in the weights, e.g. `{}`", .0.len(), .0.first().map(String::as_str).unwrap_or(""))]
    UnexpectedTensors(Vec<String>),
    /// A tensor is stored in a dtype we cannot read.
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype { name: String, dtype: String },
    /// A config.json asks for something this implementation does not support.
    #[error("unsupported model config: {0}")]
    UnsupportedConfig(String),
    /// A config.json or other JSON file could not be parsed.
    #[error("invalid JSON in {what}: {source}")]
    Json { what: String, source: serde_json::Error },
    /// A safetensors file could not be parsed.
    #[error("invalid safetensors file {what}: {message}")]
    Safetensors { what: String, message: String },
    /// File system errors, with the path.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A generated image is unusable (NaN values, a flat colour); says which and why.
    #[error("bad image: {0}")]
    BadImage(String),
    /// Reading a result back from the GPU failed: the device is lost (a driver reset, a destroyed
    /// device) or out of memory. The device cannot be trusted any more.
    #[error("GPU device lost: {0}")]
    GpuLost(String),
    /// The user cancelled the generation.
    #[error("cancelled")]
    Cancelled,
    /// A request that cannot run as asked: its size, steps, strength, sampler or batch, or a size
    /// whose buffers exceed what the GPU allows. Says what to change.
    #[error("{0}")]
    InvalidRequest(String),
    /// Input that cannot be used as given: an image that cannot be decoded or has the wrong size,
    /// token ids outside the vocabulary.
    #[error("{0}")]
    InvalidInput(String),
    /// A converted model's manifest or shards are wrong (names the tensor or shard).
    #[error(transparent)]
    Weights(crate::weights::manifest::WeightsError),
    /// A LoRA file that cannot be applied to this model: names the file and its first tensor
    /// that does not fit.
    #[error("{0}")]
    BadLora(String),
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failed GPU → CPU read (burn's execution error), as the error it implies.
    pub fn readback(what: &str, error: impl std::fmt::Debug) -> Self {
        let detail = format!("{error:?}");
        // The innermost cause is the last line that is not about backtraces (nor "Asked at:",
        // which heads one).
        let cause = detail.lines().map(str::trim).rfind(|l| !l.is_empty() && !l.to_lowercase().contains("backtrace") && *l != "Asked at:").unwrap_or("");
        Error::GpuLost(format!("reading {what} back failed: {cause}"))
    }

    /// A stable name for the kind of failure, for code that must decide by it rather than by the
    /// message: the wasm API gives it to JavaScript as the error's `name` (www/worker.js restarts
    /// the worker on `GpuLost`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::MissingTensor(_)
            | Error::ShapeMismatch { .. }
            | Error::UnexpectedTensors(_)
            | Error::UnsupportedDtype { .. }
            | Error::Safetensors { .. }
            | Error::Weights(_) => "BadWeights",
            Error::UnsupportedConfig(_) => "UnsupportedConfig",
            Error::BadLora(_) => "BadLora",
            Error::Json { .. } => "BadConfig",
            Error::Io { .. } => "Io",
            Error::BadImage(_) => "BadImage",
            Error::GpuLost(_) => "GpuLost",
            Error::Cancelled => "Cancelled",
            Error::InvalidRequest(_) => "InvalidRequest",
            Error::InvalidInput(_) => "InvalidInput",
            Error::Other(_) => "Error",
        }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}
