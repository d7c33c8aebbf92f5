//! Hugging Face model folders: `config.json`, safetensors weights (single or
//! sharded with an index), tokenizer files.
