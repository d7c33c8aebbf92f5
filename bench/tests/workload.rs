//! Workloads: length specifications, synthetic prompts and prompt files.

use std::collections::HashSet;

use anyhow::{ensure, Result};
use tessera_bench::workload::{
    load_prompts, LengthSpec, Phase, PromptSource, RequestKey, Workload,
};

mod common;

fn synthetic(prompt: &str, output: &str, seed: u64) -> Result<Workload> {
    Ok(Workload {
        prompts: PromptSource::Synthetic(prompt.parse()?),
        output_len: output.parse()?,
        seed,
    })
}

fn key(point: usize, phase: Phase, index: u64) -> RequestKey {
    RequestKey {
        point,
        phase,
        index,
    }
}

#[test]
fn length_specs_parse_and_print() -> Result<()> {
    assert_eq!("fixed:16".parse::<LengthSpec>()?, LengthSpec::Fixed(16));
    let uniform: LengthSpec = "uniform:8-32".parse()?;
    assert_eq!(uniform, LengthSpec::Uniform { min: 8, max: 32 });
    assert_eq!(uniform.to_string(), "uniform:8-32");
    for bad in [
        "16",
        "fixed:0",
        "fixed:x",
        "uniform:9-3",
        "uniform:5",
        "normal:3-4",
        "uniform:0-4",
    ] {
        assert!(bad.parse::<LengthSpec>().is_err(), "{bad} was accepted");
    }
    Ok(())
}

#[test]
fn same_seed_gives_the_same_requests() -> Result<()> {
    let a = synthetic("uniform:4-40", "uniform:1-64", 9)?;
    let b = synthetic("uniform:4-40", "uniform:1-64", 9)?;
    let c = synthetic("uniform:4-40", "uniform:1-64", 10)?;
    for index in 0..50 {
        let k = key(1, Phase::Measured, index);
        assert_eq!(a.request(k), b.request(k));
        assert_ne!(a.request(k), c.request(k));
    }
    // Order of asking does not matter: a request depends on its key alone.
    let forward: Vec<_> = (0..20)
        .map(|i| a.request(key(0, Phase::Measured, i)))
        .collect();
    let backward: Vec<_> = (0..20)
        .rev()
        .map(|i| a.request(key(0, Phase::Measured, i)))
        .collect();
    assert!(forward.iter().eq(backward.iter().rev()));
    Ok(())
}

#[test]
fn points_and_phases_get_their_own_prompts() -> Result<()> {
    let w = synthetic("fixed:32", "fixed:8", 1)?;
    let mut prompts = HashSet::new();
    for point in 0..3 {
        for phase in [Phase::Warmup, Phase::Measured] {
            for index in 0..10 {
                prompts.insert(w.request(key(point, phase, index)).prompt);
            }
        }
    }
    assert_eq!(prompts.len(), 60);
    Ok(())
}

#[test]
fn lengths_are_as_specified() -> Result<()> {
    let w = synthetic("fixed:57", "fixed:8", 3)?;
    let spec = w.request(key(0, Phase::Measured, 0));
    assert_eq!(spec.prompt.split_whitespace().count(), 57);
    assert_eq!(spec.max_tokens, 8);
    assert!(spec.prompt.ends_with('.'));

    let w = synthetic("uniform:5-9", "uniform:2-4", 3)?;
    let mut seen = HashSet::new();
    for index in 0..200 {
        let spec = w.request(key(0, Phase::Measured, index));
        let words = spec.prompt.split_whitespace().count();
        ensure!((5..=9).contains(&words), "{words} words");
        ensure!(
            (2..=4).contains(&spec.max_tokens),
            "{} tokens",
            spec.max_tokens
        );
        seen.insert(words);
    }
    assert_eq!(seen.len(), 5, "every length in the range is drawn");
    Ok(())
}

#[test]
fn prompt_files_are_read_in_order() -> Result<()> {
    let dir = common::TempDir::new("prompts")?;
    let path = dir.join("prompts.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"one\", \"max_tokens\": 3}\n\n{\"prompt\": \"two\"}\n",
    )?;
    let prompts = load_prompts(&path)?;
    let w = Workload {
        prompts: PromptSource::File { path, prompts },
        output_len: "fixed:5".parse()?,
        seed: 0,
    };
    let got: Vec<_> = (0..3)
        .map(|i| w.request(key(0, Phase::Measured, i)))
        .collect();
    assert_eq!((got[0].prompt.as_str(), got[0].max_tokens), ("one", 3));
    assert_eq!((got[1].prompt.as_str(), got[1].max_tokens), ("two", 5));
    assert_eq!(got[2], got[0]);
    Ok(())
}

#[test]
fn bad_prompt_files_name_the_line() -> Result<()> {
    let dir = common::TempDir::new("bad-prompts")?;
    let path = dir.join("prompts.jsonl");
    std::fs::write(&path, "{\"prompt\": \"ok\"}\n{\"text\": \"no prompt\"}\n")?;
    let err = load_prompts(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("prompts.jsonl:2:"), "{err}");

    std::fs::write(&path, "\n")?;
    assert!(load_prompts(&path).is_err());
    assert!(load_prompts(&dir.join("missing.jsonl")).is_err());
    Ok(())
}
