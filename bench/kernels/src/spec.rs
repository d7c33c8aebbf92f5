//! Parsing of the case lists given on the command line: weight formats
//! (`all` or names such as `Q4_K`) and weight shapes (`ROWSxCOLS`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use tessera_kernels::DType;

use crate::BenchError;

/// The shape of a weight matrix: `[rows, cols]` = `[out_features, in_features]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
}

impl FromStr for Shape {
    type Err = BenchError;

    /// Parses `ROWSxCOLS`, e.g. `4096x4096`; both must be positive.
    fn from_str(s: &str) -> Result<Self, BenchError> {
        let bad = |reason: &str| BenchError::invalid("shape", s, reason);
        let (rows, cols) = s
            .trim()
            .split_once(['x', 'X'])
            .ok_or_else(|| bad("expected ROWSxCOLS, e.g. 576x1536"))?;
        let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&v| v > 0);
        match (parse(rows), parse(cols)) {
            (Some(rows), Some(cols)) => Ok(Shape { rows, cols }),
            _ => Err(bad("rows and cols must be positive integers")),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// A list of weight formats: `all`, or names separated by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatList(pub Vec<DType>);

impl FromStr for FormatList {
    type Err = BenchError;

    /// Parses `all` or e.g. `F32,Q4_1,Q4_K`. Names ignore case and
    /// underscores, so `q4k` is `Q4_K`.
    fn from_str(s: &str) -> Result<Self, BenchError> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(FormatList(DType::ALL.to_vec()));
        }
        let formats = s
            .split(',')
            .map(parse_format)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FormatList(formats))
    }
}

/// One format by name, e.g. `Q4_K`, `q4k` or `bf16`.
pub fn parse_format(name: &str) -> Result<DType, BenchError> {
    let key = |s: &str| s.replace('_', "").to_ascii_uppercase();
    let wanted = key(name.trim());
    DType::ALL
        .into_iter()
        .find(|d| key(&d.to_string()) == wanted)
        .ok_or_else(|| {
            let known: Vec<String> = DType::ALL.iter().map(|d| d.to_string()).collect();
            BenchError::invalid("format", name, format!("known: {}", known.join(", ")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_reject() -> Result<(), BenchError> {
        assert_eq!(
            "49152x576".parse::<Shape>()?,
            Shape {
                rows: 49152,
                cols: 576
            }
        );
        assert!("0x576".parse::<Shape>().is_err());
        assert!("576".parse::<Shape>().is_err());
        assert!("ax2".parse::<Shape>().is_err());
        Ok(())
    }

    #[test]
    fn formats_parse_loosely() -> Result<(), BenchError> {
        assert_eq!("all".parse::<FormatList>()?.0.len(), DType::ALL.len());
        let list: FormatList = "f32, q4k,Q6_K,bf16".parse()?;
        assert_eq!(list.0, [DType::F32, DType::Q4K, DType::Q6K, DType::BF16]);
        let err = "Q3_K".parse::<FormatList>().map(|_| ()).err();
        assert_eq!(err.map(|e| e.label()), Some("invalid_spec"));
        Ok(())
    }
}
