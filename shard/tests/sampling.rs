//! Public behaviour of the token sampler: greedy decoding, seeded
//! reproducibility, the top-k / top-p / min-p filters, temperature, the
//! penalties, log-probabilities, parameter validation and non-finite logits.

use anyhow::{ensure, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera_shard::sampling::{Sampled, Sampler, SamplingParams, MAX_TOP_LOGPROBS};

/// The default model's vocabulary size.
const VOCAB: usize = 49_152;

/// Deterministic logits that look like a model's: mostly small, a few large.
fn random_logits(rng: &mut ChaCha8Rng, vocab: usize) -> Vec<f32> {
    (0..vocab)
        .map(|_| rng.random::<f32>() * 12.0 - 6.0)
        .collect()
}

/// Sampling parameters with the given temperature and seed, the rest default.
fn sampling(temperature: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        seed: Some(seed),
        ..SamplingParams::default()
    }
}

/// `log_softmax(logits / temperature)` computed the textbook way in f64.
fn log_softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let scaled: Vec<f64> = logits.iter().map(|&x| f64::from(x) / temperature).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + scaled.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    scaled.iter().map(|x| x - lse).collect()
}

/// Counts how often each of the `vocab` tokens is drawn over `draws` calls.
fn histogram(sampler: &mut Sampler, logits: &[f32], draws: usize) -> Vec<usize> {
    let mut counts = vec![0; logits.len()];
    for _ in 0..draws {
        let token = sampler.sample(&mut logits.to_vec()).token as usize;
        counts[token] += 1;
    }
    counts
}

/// Pearson's chi-square statistic of `counts` against probabilities `probs`.
fn chi_square(counts: &[usize], probs: &[f64]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(probs)
        .map(|(&c, &p)| {
            let expected = p * n as f64;
            (c as f64 - expected).powi(2) / expected
        })
        .sum()
}

#[test]
fn defaults_are_greedy_without_penalties() -> Result<()> {
    let p = SamplingParams::default();
    ensure!(p.temperature == 0.0 && p.top_k == 0 && p.top_p == 1.0 && p.min_p == 0.0);
    ensure!(p.repetition_penalty == 1.0 && p.frequency_penalty == 0.0);
    ensure!(p.presence_penalty == 0.0 && p.seed.is_none());
    p.validate()?;
    Ok(())
}

#[test]
fn greedy_is_argmax_with_lowest_id_on_ties() -> Result<()> {
    let mut sampler = Sampler::new(SamplingParams::default(), &[])?;
    ensure!(sampler.sample(&mut [0.1, 3.0, -2.0, 2.9]).token == 1);
    ensure!(sampler.sample(&mut [1.0, 5.0, 2.0, 5.0, 5.0]).token == 1);
    ensure!(sampler.sample(&mut [7.0, 7.0]).token == 0);

    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let logits = random_logits(&mut rng, VOCAB);
    let expected = (0..VOCAB).fold(0, |best, i| if logits[i] > logits[best] { i } else { best });
    ensure!(sampler.sample(&mut logits.clone()).token as usize == expected);
    Ok(())
}

#[test]
fn same_seed_same_tokens_and_other_seeds_differ() -> Result<()> {
    let params = SamplingParams {
        top_k: 50,
        top_p: 0.95,
        ..sampling(1.0, 42)
    };
    let mut a = Sampler::new(params.clone(), &[1, 2, 3])?;
    let mut b = Sampler::new(params.clone(), &[1, 2, 3])?;
    let mut c = Sampler::new(
        SamplingParams {
            seed: Some(43),
            ..params
        },
        &[1, 2, 3],
    )?;

    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (mut same, mut differ) = (0, 0);
    for _ in 0..200 {
        let logits = random_logits(&mut rng, 1_000);
        let ta = a.sample(&mut logits.clone());
        let tb = b.sample(&mut logits.clone());
        let tc = c.sample(&mut logits.clone());
        ensure!(ta == tb, "same seed diverged: {ta:?} vs {tb:?}");
        same += 1;
        differ += usize::from(ta.token != tc.token);
    }
    ensure!(same == 200);
    ensure!(
        differ > 50,
        "seeds 42 and 43 agreed on {} of 200 draws",
        200 - differ
    );
    Ok(())
}

#[test]
fn top_k_one_is_greedy() -> Result<()> {
    let mut sampled = Sampler::new(
        SamplingParams {
            top_k: 1,
            ..sampling(1.5, 3)
        },
        &[],
    )?;
    let mut greedy = Sampler::new(SamplingParams::default(), &[])?;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..50 {
        let mut logits = random_logits(&mut rng, 2_000);
        // A tie at the top, to check that both pick the lower id.
        logits[1_500] = 10.0;
        logits[700] = 10.0;
        let s = sampled.sample(&mut logits.clone()).token;
        let g = greedy.sample(&mut logits.clone()).token;
        ensure!(s == g && g == 700, "top_k=1 chose {s}, greedy {g}");
    }
    Ok(())
}

#[test]
fn small_top_p_keeps_only_the_top_token() -> Result<()> {
    let mut sampler = Sampler::new(
        SamplingParams {
            top_p: 0.01,
            ..sampling(1.0, 4)
        },
        &[],
    )?;
    // The top token holds well under half the mass, so only the
    // keep-at-least-one rule saves it.
    let logits = [1.0, 0.9, 0.8, 0.7, 1.1, 0.6];
    let counts = histogram(&mut sampler, &logits, 500);
    ensure!(counts[4] == 500, "top_p=0.01 drew {counts:?}");
    Ok(())
}

#[test]
fn top_p_keeps_the_nucleus() -> Result<()> {
    // Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps tokens 0 and 1.
    // (Not 0.8, which sits on the boundary and is up to rounding.)
    let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    let mut sampler = Sampler::new(
        SamplingParams {
            top_p: 0.75,
            ..sampling(1.0, 5)
        },
        &[],
    )?;
    let counts = histogram(&mut sampler, &logits, 2_000);
    ensure!(
        counts[2] == 0 && counts[3] == 0,
        "outside the nucleus: {counts:?}"
    );
    ensure!(
        counts[0] > 1_000 && counts[1] > 500,
        "nucleus not renormalised: {counts:?}"
    );
    Ok(())
}

#[test]
fn min_p_filters_unlikely_tokens() -> Result<()> {
    // Relative to the top token: 1, 0.5, 0.09, 0.01. min_p 0.1 keeps two.
    let logits: Vec<f32> = [1.0f32, 0.5, 0.09, 0.01].iter().map(|p| p.ln()).collect();
    let mut sampler = Sampler::new(
        SamplingParams {
            min_p: 0.1,
            ..sampling(1.0, 6)
        },
        &[],
    )?;
    let counts = histogram(&mut sampler, &logits, 3_000);
    ensure!(
        counts[2] == 0 && counts[3] == 0,
        "min_p let through: {counts:?}"
    );
    ensure!(
        counts[0] > 1_700 && counts[1] > 700,
        "survivors not drawn: {counts:?}"
    );

    // Without min_p the same draws reach the unlikely tokens.
    let mut open = Sampler::new(sampling(1.0, 6), &[])?;
    let counts = histogram(&mut open, &logits, 3_000);
    ensure!(counts[2] > 0, "control run never drew token 2: {counts:?}");
    Ok(())
}

#[test]
fn temperature_draws_follow_the_softmax() -> Result<()> {
    let logits = [1.0f32, 0.5, 0.0, -1.0];
    let temperature = 0.7;
    let probs: Vec<f64> = log_softmax(&logits, temperature)
        .iter()
        .map(|l| l.exp())
        .collect();
    let mut sampler = Sampler::new(sampling(temperature as f32, 7), &[])?;
    let counts = histogram(&mut sampler, &logits, 20_000);

    // 3 degrees of freedom: 16.27 is the 99.9th percentile. The seed is
    // fixed, so this either always passes or always fails.
    let chi = chi_square(&counts, &probs);
    ensure!(
        chi < 16.27,
        "chi-square {chi} for {counts:?} against {probs:?}"
    );

    // The same counts must be far from the untempered softmax, or the
    // temperature was ignored.
    let untempered: Vec<f64> = log_softmax(&logits, 1.0).iter().map(|l| l.exp()).collect();
    let chi = chi_square(&counts, &untempered);
    ensure!(
        chi > 100.0,
        "counts {counts:?} also fit temperature 1 (chi-square {chi})"
    );
    Ok(())
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative() -> Result<()> {
    let params = SamplingParams {
        repetition_penalty: 2.0,
        ..SamplingParams::default()
    };

    // Positive: token 0 (in the prompt) drops from 2.0 to 1.0, below 1.5.
    let mut sampler = Sampler::new(params.clone(), &[0])?;
    let mut logits = [2.0, 1.5];
    ensure!(sampler.sample(&mut logits).token == 1);
    ensure!(logits == [1.0, 1.5], "penalised logits {logits:?}");

    // Negative: token 0 drops from -1.0 to -2.0, below -1.5.
    let mut sampler = Sampler::new(params.clone(), &[0])?;
    let mut logits = [-1.0, -1.5];
    ensure!(sampler.sample(&mut logits).token == 1);
    ensure!(logits == [-2.0, -1.5], "penalised logits {logits:?}");

    // Output tokens count too: token 2 wins, then is penalised.
    let mut sampler = Sampler::new(params, &[])?;
    ensure!(sampler.sample(&mut [1.0, 0.0, 1.6]).token == 2);
    ensure!(sampler.sample(&mut [1.0, 0.0, 1.6]).token == 0);
    Ok(())
}

#[test]
fn frequency_and_presence_count_output_tokens_only() -> Result<()> {
    let params = SamplingParams {
        frequency_penalty: 0.5,
        presence_penalty: 0.1,
        ..SamplingParams::default()
    };
    // Token 0 fills the prompt; that must not count.
    let mut sampler = Sampler::new(params, &[0, 0, 0, 0])?;
    let fresh = [3.0, 2.2, 0.0];

    let mut logits = fresh;
    ensure!(sampler.sample(&mut logits).token == 0);
    ensure!(logits == fresh, "prompt tokens were penalised: {logits:?}");

    // One earlier output: 3.0 - 0.5 - 0.1 = 2.4, still above 2.2.
    let mut logits = fresh;
    ensure!(sampler.sample(&mut logits).token == 0);
    ensure!(
        (logits[0] - 2.4).abs() < 1e-6,
        "after one output: {logits:?}"
    );

    // Two: 3.0 - 1.0 - 0.1 = 1.9, now below 2.2.
    let mut logits = fresh;
    ensure!(sampler.sample(&mut logits).token == 1);
    ensure!(
        (logits[0] - 1.9).abs() < 1e-6,
        "after two outputs: {logits:?}"
    );
    Ok(())
}

#[test]
fn logprobs_match_log_softmax() -> Result<()> {
    let logits = [1.0f32, 2.0, 3.0, 0.5, -4.0];

    // Greedy: log-softmax of the logits.
    let mut greedy = Sampler::new(SamplingParams::default(), &[])?;
    greedy.set_top_logprobs(5);
    let s = greedy.sample(&mut logits.to_vec());
    let expected = log_softmax(&logits, 1.0);
    ensure!(s.token == 2);
    ensure!(
        (f64::from(s.logprob) - expected[2]).abs() < 1e-5,
        "{} vs {}",
        s.logprob,
        expected[2]
    );
    check_top_logprobs(&s, &expected)?;

    // Sampled at temperature 2: log-softmax of logits / 2, unaffected by the
    // top-k filter that limits the draw.
    let mut sampler = Sampler::new(
        SamplingParams {
            top_k: 2,
            ..sampling(2.0, 8)
        },
        &[],
    )?;
    sampler.set_top_logprobs(3);
    let expected = log_softmax(&logits, 2.0);
    for _ in 0..20 {
        let s = sampler.sample(&mut logits.to_vec());
        let want = expected[s.token as usize];
        ensure!(
            (f64::from(s.logprob) - want).abs() < 1e-5,
            "{} vs {want}",
            s.logprob
        );
        check_top_logprobs(&s, &expected)?;
    }
    Ok(())
}

/// Checks each reported alternative against the expected log-probabilities
/// and that they are the most likely ones, in order.
fn check_top_logprobs(s: &Sampled, expected: &[f64]) -> Result<()> {
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by(|&a, &b| expected[b].total_cmp(&expected[a]));
    for (&(token, logprob), &want) in s.top_logprobs.iter().zip(&order) {
        ensure!(
            token as usize == want,
            "top_logprobs {:?}, expected order {order:?}",
            s.top_logprobs
        );
        ensure!((f64::from(logprob) - expected[want]).abs() < 1e-5);
    }
    Ok(())
}

#[test]
fn top_logprobs_are_sorted_capped_and_off_by_default() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let logits = random_logits(&mut rng, VOCAB);
    let mut sampler = Sampler::new(
        SamplingParams {
            top_p: 0.9,
            ..sampling(0.8, 9)
        },
        &[],
    )?;
    ensure!(sampler.sample(&mut logits.clone()).top_logprobs.is_empty());

    sampler.set_top_logprobs(5);
    let s = sampler.sample(&mut logits.clone());
    ensure!(s.top_logprobs.len() == 5);
    ensure!(
        s.top_logprobs.windows(2).all(|w| w[0].1 >= w[1].1),
        "{:?}",
        s.top_logprobs
    );
    ensure!(s
        .top_logprobs
        .iter()
        .all(|&(_, l)| l <= 0.0 && l.is_finite()));
    ensure!(s.logprob <= s.top_logprobs[0].1);

    sampler.set_top_logprobs(1_000);
    let s = sampler.sample(&mut logits.clone());
    ensure!(s.top_logprobs.len() == MAX_TOP_LOGPROBS);
    ensure!(
        s.top_logprobs.windows(2).all(|w| w[0].1 >= w[1].1),
        "{:?}",
        s.top_logprobs
    );

    // Fewer possible tokens than asked for: only those are reported.
    let s = sampler.sample(&mut [0.0, f32::NEG_INFINITY, 1.0]);
    ensure!(s.top_logprobs.iter().map(|t| t.0).collect::<Vec<_>>() == [2, 0]);
    Ok(())
}

#[test]
fn validate_rejects_each_bad_value_by_name() -> Result<()> {
    type Set = fn(&mut SamplingParams);
    let cases: [(&str, Set); 16] = [
        ("temperature", |p| p.temperature = -0.1),
        ("temperature", |p| p.temperature = f32::NAN),
        ("temperature", |p| p.temperature = f32::INFINITY),
        ("temperature", |p| p.temperature = 1_000.0),
        ("top_p", |p| p.top_p = 0.0),
        ("top_p", |p| p.top_p = 1.5),
        ("top_p", |p| p.top_p = f32::NAN),
        ("min_p", |p| p.min_p = -0.5),
        ("min_p", |p| p.min_p = 2.0),
        ("repetition_penalty", |p| p.repetition_penalty = 0.0),
        ("repetition_penalty", |p| {
            p.repetition_penalty = f32::INFINITY
        }),
        ("repetition_penalty", |p| p.repetition_penalty = 50.0),
        ("frequency_penalty", |p| p.frequency_penalty = 2.5),
        ("frequency_penalty", |p| p.frequency_penalty = f32::NAN),
        ("presence_penalty", |p| p.presence_penalty = -2.5),
        ("presence_penalty", |p| {
            p.presence_penalty = f32::NEG_INFINITY
        }),
    ];
    for (name, set) in cases {
        let mut params = SamplingParams::default();
        set(&mut params);
        let Err(err) = params.validate() else {
            anyhow::bail!("{name}: {params:?} was accepted");
        };
        let message = err.to_string();
        ensure!(message.starts_with(name), "message for {name}: {message}");
        ensure!(
            err.label() == format!("invalid_{name}"),
            "label for {name}: {}",
            err.label()
        );
        ensure!(err.is_invalid_argument());
        ensure!(
            Sampler::new(params, &[]).is_err(),
            "Sampler::new accepted bad {name}"
        );
    }

    let err = SamplingParams {
        top_p: 0.0,
        ..SamplingParams::default()
    }
    .validate();
    ensure!(matches!(&err, Err(e) if e.to_string() == "top_p must be in (0, 1], got 0"));

    // The edges of each range are accepted.
    let edges = SamplingParams {
        temperature: 100.0,
        top_k: usize::MAX,
        top_p: 1.0,
        min_p: 1.0,
        repetition_penalty: 10.0,
        frequency_penalty: -2.0,
        presence_penalty: 2.0,
        seed: Some(u64::MAX),
    };
    edges.validate()?;
    Ok(())
}

#[test]
fn non_finite_logits_do_not_panic() -> Result<()> {
    for temperature in [0.0, 1.0] {
        let mut sampler = Sampler::new(
            SamplingParams {
                top_p: 0.5,
                ..sampling(temperature, 10)
            },
            &[],
        )?;
        sampler.set_top_logprobs(3);

        // NaN is treated as impossible.
        let s = sampler.sample(&mut [f32::NAN, 1.0, f32::NAN, f32::NEG_INFINITY]);
        ensure!(s.token == 1 && s.logprob == 0.0, "{s:?}");

        // +inf wins; of two, top_p 0.5 keeps the lower id.
        let s = sampler.sample(&mut [0.0, f32::INFINITY, f32::INFINITY]);
        ensure!(s.token == 1, "{s:?}");
        ensure!(s.logprob.is_finite(), "{s:?}");

        // Nothing possible: token 0, logprob -inf, no alternatives.
        for logits in [
            &mut [f32::NAN; 4][..],
            &mut [f32::NEG_INFINITY; 4][..],
            &mut [][..],
        ] {
            let s = sampler.sample(logits);
            ensure!(s.token == 0 && s.logprob == f32::NEG_INFINITY, "{s:?}");
            ensure!(s.top_logprobs.is_empty());
        }
    }
    Ok(())
}

#[test]
fn extreme_temperatures_stay_finite() -> Result<()> {
    let logits = [1.0, 3.0, 2.0, -f32::MAX];
    let mut cold = Sampler::new(sampling(1e-30, 11), &[])?;
    for _ in 0..20 {
        let s = cold.sample(&mut logits.to_vec());
        ensure!(s.token == 1 && s.logprob == 0.0, "{s:?}");
    }
    let mut hot = Sampler::new(sampling(100.0, 11), &[])?;
    let counts = histogram(&mut hot, &logits, 3_000);
    ensure!(
        counts[..3].iter().all(|&c| c > 800),
        "temperature 100 is not flat: {counts:?}"
    );
    Ok(())
}

#[test]
fn full_vocabulary_filters_agree_with_a_reference() -> Result<()> {
    // top_p over the whole vocabulary, large enough that the nucleus
    // outgrows the partial sort, checked against a full sort.
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let logits = random_logits(&mut rng, VOCAB);
    let top_p = 0.5;
    let expected = log_softmax(&logits, 1.0);
    let mut order: Vec<usize> = (0..VOCAB).collect();
    order.sort_by(|&a, &b| expected[b].total_cmp(&expected[a]));
    let mut cum = 0.0;
    let nucleus = order.iter().take_while(|&&i| {
        let inside = cum < f64::from(top_p);
        cum += expected[i].exp();
        inside
    });
    let mut allowed = vec![false; VOCAB];
    nucleus.for_each(|&i| allowed[i] = true);
    let size = allowed.iter().filter(|&&a| a).count();
    ensure!(
        size > 1_000,
        "test setup: nucleus of {size} tokens is too small"
    );

    let mut sampler = Sampler::new(
        SamplingParams {
            top_p,
            ..sampling(1.0, 12)
        },
        &[],
    )?;
    for _ in 0..300 {
        let token = sampler.sample(&mut logits.clone()).token as usize;
        ensure!(
            allowed[token],
            "token {token} is outside the nucleus of {size}"
        );
    }
    Ok(())
}
