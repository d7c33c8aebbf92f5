//! Greedy decoding through the public gRPC API reproduces the golden outputs
//! at tensor-parallel degrees 1, 2 and 3, over Generate, GenerateStream and
//! Chat, with the right usage counts and finish reasons.
//!
//! One `tessera serve` per degree runs every check. A token may differ from
//! the golden one only at a step whose golden margin is below
//! `TIE_MARGIN` (0.02): there two tokens are equally valid greedy choices
//! under another summation order, so the comparison of that prompt stops
//! there (see `tessera_e2e::fixtures`).

use anyhow::{ensure, Result};
use tessera_client::request::{self, GenerateRequestBuilder};
use tessera_client::{Client, FinishReason, GenerateResponse, GenerationStream};
use tessera_e2e::{check_greedy, setup, Coordinator, GoldenPrompt, ServeOptions, Setup};

/// The question of the chat check, and how its answer must begin.
const QUESTION: &str = "What is the capital of France?";
const ANSWER: &str = "The capital of France is Paris";

#[tokio::test]
async fn golden_over_grpc_tp1() -> Result<()> {
    golden_over_grpc(1).await
}

#[tokio::test]
async fn golden_over_grpc_tp2() -> Result<()> {
    golden_over_grpc(2).await
}

/// At TP 3 every prompt is prefilled in chunks of 4 tokens over several
/// steps, which must not change a single token.
#[tokio::test]
async fn golden_over_grpc_tp3() -> Result<()> {
    golden_over_grpc(3).await
}

async fn golden_over_grpc(tp: usize) -> Result<()> {
    let Some(setup) = setup()? else { return Ok(()) };
    let mut options = ServeOptions::tp(tp);
    if tp == 3 {
        options.max_prefill_tokens = Some(4);
    }
    let mut coordinator = Coordinator::start(&setup, &options)?;
    let client = coordinator.client().await?;

    let info = client.model_info().await?;
    ensure!(
        info.world_size == tp as u32,
        "ModelInfo says world size {}, expected {tp}",
        info.world_size
    );

    // Every golden prompt, chat prompt included, as raw token ids.
    for prompt in &setup.golden.prompts {
        let response = client.generate(golden_request(prompt)).await?;
        check_golden_response(prompt, &response)?;
    }

    // One prompt per degree, a different one each, streamed as well.
    let prompts: Vec<&GoldenPrompt> = setup.golden.text_prompts().collect();
    let prompt = prompts[tp % prompts.len()];
    let stream = client.generate_stream(golden_request(prompt)).await?;
    let streamed = join_chunks(stream).await?;
    check_golden_response(prompt, &streamed)?;

    check_chat(&client, &setup).await?;
    drop(client);
    coordinator.stop().await
}

/// The golden run's request: the prompt ids, greedy (the default), exactly
/// `n_new` tokens with end-of-sequence tokens not stopping.
fn golden_request(prompt: &GoldenPrompt) -> GenerateRequestBuilder {
    request::token_ids(prompt.prompt_ids.iter().copied())
        .max_new_tokens(prompt.n_new as u32)
        .ignore_eos(true)
}

/// Checks a response to [`golden_request`]: ids, text, finish reason, usage.
fn check_golden_response(prompt: &GoldenPrompt, response: &GenerateResponse) -> Result<()> {
    check_greedy(prompt, &response.token_ids)?;

    // The text is the detokenized ids; a prompt whose golden continuation
    // holds no special token must give exactly the golden text.
    if prompt.eos_index.is_none() && response.token_ids == prompt.greedy_ids {
        ensure!(
            response.text == prompt.greedy_text,
            "{}: text {:?} is not the golden text",
            prompt.name,
            response.text
        );
    }
    ensure!(
        response.finish_reason() == FinishReason::Length,
        "{}: finish reason {:?}, expected LENGTH",
        prompt.name,
        response.finish_reason()
    );
    let usage = response.usage.unwrap_or_default();
    ensure!(
        usage.prompt_tokens as usize == prompt.prompt_ids.len()
            && usage.completion_tokens as usize == prompt.n_new,
        "{}: usage {usage:?}, expected {} prompt and {} completion tokens",
        prompt.name,
        prompt.prompt_ids.len(),
        prompt.n_new
    );
    Ok(())
}

/// Joins a stream's chunks into a response, checking that only the last
/// chunk carries the finish reason and the usage.
async fn join_chunks(mut stream: GenerationStream) -> Result<GenerateResponse> {
    let mut response = GenerateResponse::default();
    while let Some(chunk) = stream.next_chunk().await? {
        ensure!(
            response.finish_reason == 0,
            "a chunk came after the one with the finish reason"
        );
        ensure!(
            (chunk.finish_reason == 0) == chunk.usage.is_none(),
            "finish reason and usage must come together, on the last chunk: {chunk:?}"
        );
        response.token_ids.extend(&chunk.token_ids);
        response.text.push_str(&chunk.text);
        response.finish_reason = chunk.finish_reason;
        response.usage = chunk.usage;
    }
    ensure!(
        response.finish_reason != 0,
        "the stream ended without a finish reason"
    );
    Ok(response)
}

/// The chat question through Chat: the model's template, then greedy
/// decoding to its end-of-sequence token.
async fn check_chat(client: &Client, setup: &Setup) -> Result<()> {
    let golden = setup.golden.prompt("CHAT")?;
    let response = client
        .chat(request::chat([request::user(QUESTION)]).max_new_tokens(64))
        .await?;

    ensure!(
        response.text.starts_with(ANSWER),
        "the chat answer is {:?}",
        response.text
    );
    ensure!(
        response.finish_reason() == FinishReason::Eos,
        "the chat answer ended with {:?}, expected EOS",
        response.finish_reason()
    );

    // The template renders the golden chat prompt, and the answer is the
    // golden one up to and including its end-of-sequence token.
    let rendered = client
        .tokenize(request::tokenize_chat([request::user(QUESTION)]))
        .await?;
    ensure!(
        rendered.token_ids == golden.prompt_ids,
        "the chat prompt renders as {:?}, the golden one is {:?}",
        rendered.token_ids,
        golden.prompt_ids
    );
    let eos = golden.eos_index.unwrap_or(golden.n_new - 1);
    check_greedy(golden, &padded(&response.token_ids, golden, eos + 1)?)?;
    let usage = response.usage.unwrap_or_default();
    ensure!(
        usage.prompt_tokens as usize == golden.prompt_ids.len()
            && usage.completion_tokens as usize == eos + 1,
        "chat usage {usage:?}, expected {} prompt and {} completion tokens",
        golden.prompt_ids.len(),
        eos + 1
    );
    Ok(())
}

/// `ids`, which must be `len` long, followed by the rest of the golden ids,
/// so that a run cut short by its end token can be checked like a full one.
fn padded(ids: &[u32], golden: &GoldenPrompt, len: usize) -> Result<Vec<u32>> {
    ensure!(
        ids.len() == len,
        "{}: got {} tokens, expected {len}: {ids:?}",
        golden.name,
        ids.len()
    );
    Ok(ids
        .iter()
        .chain(&golden.greedy_ids[len..])
        .copied()
        .collect())
}
