//! Parsing and validating a GGUF file.
//!
//! Every read goes through [`Cursor`], which fails instead of reading past the
//! end. Before a count or length drives a loop or an allocation it is checked
//! against the bytes left (each element takes at least a known number of
//! bytes), so a corrupt header yields an error, never a huge allocation.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use tessera_kernels::DType;

use super::{GgufFile, GgufTensor, Value, ALIGNMENT_KEY, DEFAULT_ALIGNMENT};
use crate::store::map_file;
use crate::FormatError;

const MAGIC: &[u8; 4] = b"GGUF";
const FORMAT: &str = "GGUF";

/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;

/// Deepest nesting of arrays inside arrays; real files use at most one level.
/// The limit keeps a crafted file from exhausting the stack.
const MAX_ARRAY_DEPTH: usize = 8;

/// Smallest encoded metadata entry: an empty key (8), a type (4), a u8 value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;

/// Smallest encoded tensor info: an empty name (8), n_dims (4), one dim (8),
/// a type (4) and an offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// Metadata value type ids from the GGUF specification.
pub(super) mod ids {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Maps and parses the GGUF file at `path`.
pub fn open(path: &Path) -> Result<GgufFile, FormatError> {
    let mmap = map_file(path)?;
    let mut cur = Cursor {
        bytes: &mmap[..],
        pos: 0,
        path,
    };

    let version = read_preamble(&mut cur)?;
    let tensor_count = cur.u64("tensor count")?;
    let kv_count = cur.u64("metadata count")?;
    cur.check_count(kv_count, MIN_KV_BYTES, "metadata entries")?;
    cur.check_count(tensor_count, MIN_TENSOR_INFO_BYTES, "tensor infos")?;

    let metadata = read_metadata(&mut cur, kv_count)?;
    let alignment = alignment(path, &metadata)?;
    let raw = read_tensor_infos(&mut cur, tensor_count)?;

    // The data section starts at the first aligned offset after the infos.
    let data_start = align_up(cur.pos as u64, alignment)
        .ok_or_else(|| cur.malformed("data section offset overflows".to_string()))?;
    let layout = Layout {
        path,
        data_start,
        alignment,
        file_len: mmap.len() as u64,
    };
    let tensors = raw
        .into_iter()
        .map(|t| layout.locate(t))
        .collect::<Result<_, _>>()?;

    tracing::debug!(path = %path.display(), version, tensor_count, kv_count, "gguf parsed");
    Ok(GgufFile {
        path: path.to_path_buf(),
        version,
        metadata,
        tensors,
        mmap,
    })
}

/// Checks the magic and returns the version.
fn read_preamble(cur: &mut Cursor<'_>) -> Result<u32, FormatError> {
    let magic = cur.take(4, "magic")?;
    if magic != MAGIC {
        return Err(cur.malformed(format!("bad magic {magic:02x?}, expected \"GGUF\"")));
    }
    let version = cur.u32("version")?;
    match version {
        2 | 3 => Ok(version),
        // A big-endian file's version reads byte-swapped.
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            Err(cur.malformed("big-endian GGUF files are not supported".to_string()))
        }
        v => Err(FormatError::UnsupportedVersion {
            path: cur.path.to_path_buf(),
            format: FORMAT,
            version: v,
            supported: "2, 3",
        }),
    }
}

/// Reads `count` metadata key/value pairs; duplicate keys are an error.
fn read_metadata(cur: &mut Cursor<'_>, count: u64) -> Result<BTreeMap<String, Value>, FormatError> {
    let mut metadata = BTreeMap::new();
    for i in 0..count {
        let key = cur.string(&format!("metadata key #{i}"))?;
        let ty = cur.u32(&format!("type of metadata `{key}`"))?;
        let value = read_value(cur, ty, &key, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(cur.malformed(format!("metadata key `{key}` appears twice")));
        }
    }
    Ok(metadata)
}

/// Reads one value of type `ty`; `depth` counts enclosing arrays.
fn read_value(
    cur: &mut Cursor<'_>,
    ty: u32,
    key: &str,
    depth: usize,
) -> Result<Value, FormatError> {
    let what = || format!("value of metadata `{key}`");
    Ok(match ty {
        ids::U8 => Value::U8(u8::from_le_bytes(cur.array(&what())?)),
        ids::I8 => Value::I8(i8::from_le_bytes(cur.array(&what())?)),
        ids::U16 => Value::U16(u16::from_le_bytes(cur.array(&what())?)),
        ids::I16 => Value::I16(i16::from_le_bytes(cur.array(&what())?)),
        ids::U32 => Value::U32(u32::from_le_bytes(cur.array(&what())?)),
        ids::I32 => Value::I32(i32::from_le_bytes(cur.array(&what())?)),
        ids::U64 => Value::U64(u64::from_le_bytes(cur.array(&what())?)),
        ids::I64 => Value::I64(i64::from_le_bytes(cur.array(&what())?)),
        ids::F32 => Value::F32(f32::from_le_bytes(cur.array(&what())?)),
        ids::F64 => Value::F64(f64::from_le_bytes(cur.array(&what())?)),
        ids::BOOL => match cur.array::<1>(&what())? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            [b] => {
                return Err(cur.malformed(format!("metadata `{key}`: bool byte is {b}, not 0 or 1")))
            }
        },
        ids::STRING => Value::String(cur.string(&what())?),
        ids::ARRAY => read_array(cur, key, depth)?,
        other => {
            return Err(cur.malformed(format!("metadata `{key}` has unknown value type {other}")))
        }
    })
}

/// Reads an array's element type, length and elements.
fn read_array(cur: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Value, FormatError> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(cur.malformed(format!(
            "metadata `{key}` nests arrays deeper than {MAX_ARRAY_DEPTH}"
        )));
    }
    let elem_ty = cur.u32(&format!("element type of metadata `{key}`"))?;
    let len = cur.u64(&format!("length of metadata `{key}`"))?;
    let Some(min) = min_encoded_size(elem_ty) else {
        return Err(cur.malformed(format!(
            "metadata `{key}` is an array of unknown value type {elem_ty}"
        )));
    };
    cur.check_count(len, min, &format!("elements of metadata `{key}`"))?;

    // `check_count` bounded `len` by the bytes left, so this allocation is too.
    let mut items = Vec::with_capacity(len as usize);
    for _ in 0..len {
        items.push(read_value(cur, elem_ty, key, depth + 1)?);
    }
    Ok(Value::Array(items))
}

/// The fewest bytes a value of type `ty` takes, or `None` for an unknown type.
fn min_encoded_size(ty: u32) -> Option<u64> {
    Some(match ty {
        ids::U8 | ids::I8 | ids::BOOL => 1,
        ids::U16 | ids::I16 => 2,
        ids::U32 | ids::I32 | ids::F32 => 4,
        ids::U64 | ids::I64 | ids::F64 | ids::STRING => 8,
        ids::ARRAY => 12,
        _ => return None,
    })
}

/// `general.alignment`, which must be a power of two; 32 when absent.
fn alignment(path: &Path, metadata: &BTreeMap<String, Value>) -> Result<u64, FormatError> {
    let Some(value) = metadata.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => Err(FormatError::Malformed {
            path: path.to_path_buf(),
            format: FORMAT,
            reason: format!("`{ALIGNMENT_KEY}` is {value:?}; it must be a power of two"),
        }),
    }
}

/// A tensor info as stored, before its type and range are checked.
struct RawTensorInfo {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    offset: u64,
}

/// Reads `count` tensor infos; duplicate names are an error.
fn read_tensor_infos(cur: &mut Cursor<'_>, count: u64) -> Result<Vec<RawTensorInfo>, FormatError> {
    let mut seen = HashSet::new();
    // `check_count` bounded `count` by the bytes left.
    let mut infos = Vec::with_capacity(count as usize);
    for i in 0..count {
        let name = cur.string(&format!("name of tensor #{i}"))?;
        let n_dims = cur.u32(&format!("dimension count of tensor `{name}`"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(cur.malformed(format!(
                "tensor `{name}` has {n_dims} dimensions; 1 to {MAX_DIMS} are allowed"
            )));
        }
        let dims = (0..n_dims)
            .map(|_| cur.u64(&format!("dimensions of tensor `{name}`")))
            .collect::<Result<Vec<_>, _>>()?;
        let ggml_type = cur.u32(&format!("type of tensor `{name}`"))?;
        let offset = cur.u64(&format!("offset of tensor `{name}`"))?;
        if !seen.insert(name.clone()) {
            return Err(cur.malformed(format!("tensor `{name}` appears twice")));
        }
        infos.push(RawTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }
    Ok(infos)
}

/// Where the data section is, for checking each tensor against it.
struct Layout<'a> {
    path: &'a Path,
    /// Absolute offset of the data section.
    data_start: u64,
    alignment: u64,
    file_len: u64,
}

impl Layout<'_> {
    fn malformed(&self, reason: String) -> FormatError {
        FormatError::Malformed {
            path: self.path.to_path_buf(),
            format: FORMAT,
            reason,
        }
    }

    /// Checks a tensor's type, size, alignment and range.
    fn locate(&self, raw: RawTensorInfo) -> Result<GgufTensor, FormatError> {
        let name = &raw.name;
        let dtype =
            DType::from_gguf_id(raw.ggml_type).ok_or_else(|| FormatError::UnsupportedDType {
                path: self.path.to_path_buf(),
                tensor: name.clone(),
                dtype: ggml_type_label(raw.ggml_type),
            })?;
        let size = self.byte_size(name, &raw.dims, dtype)?;
        if !raw.offset.is_multiple_of(self.alignment) {
            return Err(self.malformed(format!(
                "tensor `{name}` starts at data offset {}, not a multiple of the alignment {}",
                raw.offset, self.alignment
            )));
        }

        let overflow = || self.malformed(format!("tensor `{name}`'s byte range overflows"));
        let start = self
            .data_start
            .checked_add(raw.offset)
            .ok_or_else(overflow)?;
        let end = start.checked_add(size).ok_or_else(overflow)?;
        if end > self.file_len {
            return Err(self.malformed(format!(
                "tensor `{name}` needs {size} bytes at offset {start}, but only {} are available \
                 (file is {} bytes; truncated?)",
                self.file_len.saturating_sub(start),
                self.file_len
            )));
        }

        // Both ends are within the mapped file, whose length is a usize.
        let range = usize::try_from(start).map_err(|_| overflow())?
            ..usize::try_from(end).map_err(|_| overflow())?;
        let shape = raw
            .dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).map_err(|_| overflow()))
            .collect::<Result<_, _>>()?;
        Ok(GgufTensor {
            name: raw.name,
            dims: raw.dims,
            ggml_type: raw.ggml_type,
            dtype,
            shape,
            range,
        })
    }

    /// Bytes taken by a tensor of `dims` in `dtype`.
    fn byte_size(&self, name: &str, dims: &[u64], dtype: DType) -> Result<u64, FormatError> {
        let block = dtype.block_size() as u64;
        let inner = dims.first().copied().unwrap_or(1);
        if inner % block != 0 {
            return Err(self.malformed(format!(
                "tensor `{name}` is {dtype} but its innermost dimension {inner} is not a multiple \
                 of the block size {block}"
            )));
        }
        let overflow = || {
            self.malformed(format!(
                "tensor `{name}`'s size overflows: dimensions {dims:?}"
            ))
        };
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(overflow)?;
        (elements / block)
            .checked_mul(dtype.block_bytes() as u64)
            .ok_or_else(overflow)
    }
}

/// A ggml type id with its name when known, for errors about unsupported types.
fn ggml_type_label(id: u32) -> String {
    let name = match id {
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        _ => return format!("ggml type id {id}"),
    };
    format!("ggml type id {id} ({name})")
}

/// `offset` rounded up to a multiple of `alignment` (a power of two).
pub(super) fn align_up(offset: u64, alignment: u64) -> Option<u64> {
    Some(offset.checked_add(alignment - 1)? & !(alignment - 1))
}

/// A bounds-checked reader over the mapped file.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn malformed(&self, reason: String) -> FormatError {
        FormatError::Malformed {
            path: self.path.to_path_buf(),
            format: FORMAT,
            reason,
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// Fails unless `count` items of at least `min_bytes` each can fit in the
    /// bytes left.
    fn check_count(&self, count: u64, min_bytes: u64, what: &str) -> Result<(), FormatError> {
        match count.checked_mul(min_bytes) {
            Some(need) if need <= self.remaining() => Ok(()),
            _ => Err(self.malformed(format!(
                "{count} {what} at offset {} cannot fit in the {} bytes left",
                self.pos,
                self.remaining()
            ))),
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(self.malformed(format!(
                "{what} at offset {} needs {n} bytes but only {} are left",
                self.pos,
                self.remaining()
            )));
        }
        // `n` fits: it is at most the remaining length, a usize.
        let end = self.pos + n as usize;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        let slice = self.take(N as u64, what)?;
        Ok(slice.try_into().expect("take returned exactly N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u64 length then that many bytes of UTF-8.
    fn string(&mut self, what: &str) -> Result<String, FormatError> {
        let start = self.pos;
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => {
                Err(self.malformed(format!("{what} at offset {start} is not valid UTF-8: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_to_power_of_two() {
        assert_eq!(align_up(0, 32), Some(0));
        assert_eq!(align_up(1, 32), Some(32));
        assert_eq!(align_up(64, 32), Some(64));
        assert_eq!(align_up(u64::MAX, 32), None);
    }

    #[test]
    fn min_sizes_cover_every_known_type() {
        for ty in 0..=12 {
            assert!(min_encoded_size(ty).is_some(), "type {ty}");
        }
        assert_eq!(min_encoded_size(13), None);
    }

    #[test]
    fn labels_name_known_ids() {
        assert_eq!(ggml_type_label(10), "ggml type id 10 (Q2_K)");
        assert_eq!(ggml_type_label(200), "ggml type id 200");
    }
}
