//! Model files for Tessera: what a model is ([`ModelConfig`]), where its
//! tensors are ([`TensorStore`]), how it reads text ([`Tokenizer`]) and how it
//! renders a conversation ([`ChatTemplate`]).
//!
//! Two sources are read: a single GGUF file (v2 or v3) and a Hugging Face
//! folder (`config.json`, `tokenizer.json`, `tokenizer_config.json`, one or
//! several `.safetensors` files). Files are memory-mapped; nothing is copied
//! until a caller asks for a tensor's bytes. Tensors are exposed under
//! canonical names (GGUF's: `token_embd.weight`, `blk.{i}.attn_q.weight`, …)
//! and `[rows, cols]` = `[out, in]` shapes whichever source they came from.

mod chat;
mod config;
mod detokenizer;
mod error;
pub mod gguf;
mod hf;
mod model_files;
mod store;
mod tokenizer;
mod validate;

pub use chat::{ChatMessage, ChatTemplate};
pub use config::{Architecture, ModelConfig, RopeScaling, RopeStyle};
pub use detokenizer::Detokenizer;
pub use error::FormatError;
pub use model_files::ModelFiles;
pub use store::{TensorInfo, TensorStore};
pub use tokenizer::Tokenizer;
pub use validate::{required_tensors, validate_tensors};
