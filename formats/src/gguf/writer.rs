//! Writing GGUF files: synthetic models for tests, benchmarks and tools.
//!
//! [`GgufWriter`] collects metadata and already-encoded tensors, then writes a
//! little-endian GGUF file (v3 unless told otherwise) that [`super::open`]
//! accepts: tensor data aligned to `general.alignment` (32 unless set), shapes
//! given outermost first and stored in ggml order (innermost first).
//!
//! ```no_run
//! # fn main() -> Result<(), tessera_formats::FormatError> {
//! use tessera_formats::gguf::GgufWriter;
//!
//! let mut w = GgufWriter::new();
//! w.add_metadata("general.architecture", "llama")
//!     .add_f32_tensor("output_norm.weight", &[4], &[1.0; 4]);
//! w.write(std::path::Path::new("/tmp/tiny.gguf"))?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use tessera_kernels::DType;

use super::reader::{align_up, ids};
use super::{Value, ALIGNMENT_KEY, DEFAULT_ALIGNMENT};
use crate::FormatError;

/// A tensor waiting to be written.
#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dtype: DType,
    /// Outermost first, as callers think of it.
    shape: Vec<usize>,
    /// Encoded bytes: `dtype.bytes_for(numel)` of them.
    data: Vec<u8>,
}

/// Builds a GGUF file in memory and writes it out.
///
/// Nothing is checked until [`GgufWriter::write`], which reports every
/// problem (wrong byte count, bad alignment, mixed arrays) with the path.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    /// In insertion order; a key added twice keeps its first position.
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty v3 file.
    pub fn new() -> Self {
        Self {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Writes format version `version` (2 or 3; the two differ only in
    /// byte-order support, and this writer is little-endian). Default 3.
    pub fn set_version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets `general.alignment` (bytes; a power of two). Default 32.
    pub fn set_alignment(&mut self, alignment: u32) -> &mut Self {
        self.add_metadata(ALIGNMENT_KEY, Value::U32(alignment))
    }

    /// Adds a metadata value, replacing any earlier value under `key`.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        let key = key.into();
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Adds a tensor of `shape` (outermost first, e.g. `[rows, cols]`) whose
    /// bytes are already encoded in `dtype`.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: &[usize],
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            data: data.into(),
        });
        self
    }

    /// Adds an F32 tensor of `shape` (outermost first) from `values`.
    pub fn add_f32_tensor(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        values: &[f32],
    ) -> &mut Self {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor(name, DType::F32, shape, data)
    }

    /// Checks everything and writes the file at `path`.
    pub fn write(&self, path: &Path) -> Result<(), FormatError> {
        let fail = |reason: String| FormatError::Write {
            path: path.to_path_buf(),
            reason,
        };
        if !matches!(self.version, 2 | 3) {
            return Err(fail(format!(
                "GGUF version {} cannot be written; use 2 or 3",
                self.version
            )));
        }
        let alignment = self.alignment().map_err(fail)?;
        self.check_tensors().map_err(fail)?;

        let offsets = self.data_offsets(alignment).map_err(fail)?;
        let mut header = self.header(&offsets).map_err(fail)?;
        let data_start = align_up(header.len() as u64, alignment)
            .ok_or_else(|| fail("header too large".into()))?;
        header.resize(data_start as usize, 0);

        let io = |source| FormatError::Io {
            path: path.to_path_buf(),
            error: source,
        };
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        out.write_all(&header).map_err(io)?;
        let mut written = 0u64;
        for (tensor, &offset) in self.tensors.iter().zip(&offsets) {
            // Padding between tensors, so each starts at its aligned offset.
            out.write_all(&vec![0u8; (offset - written) as usize])
                .map_err(io)?;
            out.write_all(&tensor.data).map_err(io)?;
            written = offset + tensor.data.len() as u64;
        }
        out.flush().map_err(io)
    }

    /// `general.alignment` if set, else the default.
    fn alignment(&self) -> Result<u64, String> {
        let Some((_, value)) = self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) else {
            return Ok(DEFAULT_ALIGNMENT);
        };
        match value.as_u64() {
            Some(a) if a.is_power_of_two() => Ok(a),
            _ => Err(format!(
                "`{ALIGNMENT_KEY}` is {value:?}; it must be a power of two"
            )),
        }
    }

    /// Each tensor's name is unique, its shape valid and its byte count right.
    fn check_tensors(&self) -> Result<(), String> {
        let mut seen = HashSet::new();
        for t in &self.tensors {
            if !seen.insert(t.name.as_str()) {
                return Err(format!("tensor `{}` added twice", t.name));
            }
            if t.shape.is_empty() || t.shape.len() > 4 {
                return Err(format!(
                    "tensor `{}` has shape {:?}; 1 to 4 dimensions are allowed",
                    t.name, t.shape
                ));
            }
            let numel = t
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let inner = t.shape.last().copied().unwrap_or(1);
            let expected = numel
                .filter(|_| inner % t.dtype.block_size() == 0)
                .and_then(|n| t.dtype.bytes_for(n));
            match expected {
                Some(bytes) if bytes == t.data.len() => {}
                Some(bytes) => {
                    return Err(format!(
                        "tensor `{}` ({} {:?}) needs {bytes} bytes, got {}",
                        t.name,
                        t.dtype,
                        t.shape,
                        t.data.len()
                    ))
                }
                None => {
                    return Err(format!(
                        "tensor `{}` shape {:?} is not a whole number of {} blocks along its last dimension",
                        t.name, t.shape, t.dtype
                    ))
                }
            }
        }
        Ok(())
    }

    /// Each tensor's aligned offset from the start of the data section.
    fn data_offsets(&self, alignment: u64) -> Result<Vec<u64>, String> {
        let mut next = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let offset = align_up(next, alignment).ok_or("tensor data too large")?;
            offsets.push(offset);
            next = offset
                .checked_add(t.data.len() as u64)
                .ok_or("tensor data too large")?;
        }
        Ok(offsets)
    }

    /// Magic, counts, metadata and tensor infos (without trailing padding).
    fn header(&self, offsets: &[u64]) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        buf.extend_from_slice(b"GGUF");
        buf.extend_from_slice(&self.version.to_le_bytes());
        buf.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut buf, key);
            buf.extend_from_slice(&type_id(value).to_le_bytes());
            put_value(&mut buf, value).map_err(|e| format!("metadata `{key}`: {e}"))?;
        }
        for (t, offset) in self.tensors.iter().zip(offsets) {
            put_string(&mut buf, &t.name);
            buf.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                buf.extend_from_slice(&(d as u64).to_le_bytes());
            }
            buf.extend_from_slice(&t.dtype.gguf_id().to_le_bytes());
            buf.extend_from_slice(&offset.to_le_bytes());
        }
        Ok(buf)
    }
}

/// The GGUF value type id of `value`.
fn type_id(value: &Value) -> u32 {
    match value {
        Value::U8(_) => ids::U8,
        Value::I8(_) => ids::I8,
        Value::U16(_) => ids::U16,
        Value::I16(_) => ids::I16,
        Value::U32(_) => ids::U32,
        Value::I32(_) => ids::I32,
        Value::U64(_) => ids::U64,
        Value::I64(_) => ids::I64,
        Value::F32(_) => ids::F32,
        Value::F64(_) => ids::F64,
        Value::Bool(_) => ids::BOOL,
        Value::String(_) => ids::STRING,
        Value::Array(_) => ids::ARRAY,
    }
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Appends `value`'s encoding (without its type id).
fn put_value(buf: &mut Vec<u8>, value: &Value) -> Result<(), String> {
    match value {
        Value::U8(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I8(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => buf.push(u8::from(*v)),
        Value::String(s) => put_string(buf, s),
        Value::Array(items) => put_array(buf, items)?,
    }
    Ok(())
}

/// Appends an array: element type, length, elements. GGUF arrays hold one
/// element type; an empty array is written as an array of u8.
fn put_array(buf: &mut Vec<u8>, items: &[Value]) -> Result<(), String> {
    let elem = items.first().map_or(ids::U8, type_id);
    if let Some(odd) = items.iter().find(|v| type_id(v) != elem) {
        return Err(format!(
            "array mixes {} and {} elements; GGUF arrays hold one type",
            items.first().map_or("?", Value::type_name),
            odd.type_name()
        ));
    }
    buf.extend_from_slice(&elem.to_le_bytes());
    buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
    for item in items {
        put_value(buf, item)?;
    }
    Ok(())
}
