//! The running batch: one step's requests to the shards and what each
//! sampled token does to its request (text, stop conditions, events).

use tessera_formats::Tokenizer;
use tessera_proto::shard::v1 as shard;
use tessera_proto::v1 as api;
use tokio::sync::mpsc;

use super::{Event, Scheduler};
use crate::error::ServeError;
use crate::request::GenRequest;
use crate::text::TextOutput;
use tessera_shard::kv_cache::BlockTable;

/// A request in the running batch.
pub(super) struct Running {
    pub id: u64,
    pub req: GenRequest,
    pub events: mpsc::Sender<Event>,
    pub table: BlockTable,
    /// Tokens generated so far.
    pub generated: usize,
    /// Prompt tokens already prefilled.
    prefilled: usize,
    /// The last sampled token, fed back at the next decode step.
    last: u32,
    text: TextOutput,
}

/// What happened to a request after one token.
enum Outcome {
    Continue,
    Finished,
}

impl Running {
    pub fn new(id: u64, req: GenRequest, events: mpsc::Sender<Event>, table: BlockTable) -> Self {
        let text = TextOutput::new(req.stop.clone());
        Self {
            id,
            req,
            events,
            table,
            generated: 0,
            prefilled: 0,
            last: 0,
            text,
        }
    }

    /// Prompt tokens not yet prefilled.
    fn prompt_left(&self) -> usize {
        self.req.prompt.len() - self.prefilled
    }

    /// The next `len` prompt tokens as a prefill chunk.
    fn prefill_chunk(&self, len: usize) -> shard::PrefillSeq {
        let s = &self.req.sampling;
        let end = self.prefilled + len;
        shard::PrefillSeq {
            id: self.id,
            tokens: self.req.prompt[self.prefilled..end].to_vec(),
            start_pos: self.prefilled as u32,
            blocks: self.table.clone(),
            partial: end < self.req.prompt.len(),
            sampling: (self.prefilled == 0).then(|| shard::Sampling {
                temperature: s.temperature,
                top_k: s.top_k as u32,
                top_p: s.top_p,
                min_p: s.min_p,
                repetition_penalty: s.repetition_penalty,
                frequency_penalty: s.frequency_penalty,
                presence_penalty: s.presence_penalty,
                seed: s.seed.unwrap_or(0),
                top_logprobs: self.req.logprobs.unwrap_or(0),
            }),
        }
    }

    /// Whether the prompt is done and a token awaits feeding back.
    fn decoding(&self) -> bool {
        self.generated > 0
    }

    fn decode_seq(&self) -> shard::DecodeSeq {
        let pos = self.req.prompt.len() + self.generated - 1;
        shard::DecodeSeq {
            id: self.id,
            token: self.last,
            pos: pos as u32,
            blocks: self.table.clone(),
        }
    }

    /// Applies one sampled token: streams its text, and finishes the request
    /// on a stop token, end token, stop sequence or the token limit.
    fn accept(&mut self, sampled: &shard::SampledToken, tokenizer: &Tokenizer) -> Outcome {
        let token = sampled.token;
        self.last = token;
        self.generated += 1;
        let logprobs = self.logprobs(sampled);

        let end_token = self.req.stop_token_ids.contains(&token)
            || (!self.req.ignore_eos && tokenizer.eos_ids().contains(&token));
        let (text, finish) = if end_token {
            let reason = if self.req.stop_token_ids.contains(&token) {
                api::FinishReason::Stop
            } else {
                api::FinishReason::Eos
            };
            (self.text.finish(), Some(reason))
        } else {
            let pushed = self
                .text
                .push(&tokenizer.token_bytes(token).unwrap_or_default());
            if pushed.stopped.is_some() {
                (pushed.text, Some(api::FinishReason::Stop))
            } else if self.generated >= self.req.max_new_tokens {
                (
                    pushed.text + &self.text.finish(),
                    Some(api::FinishReason::Length),
                )
            } else {
                (pushed.text, None)
            }
        };

        // The channel holds every event a request can produce; a failed send
        // means the client is gone, which the next iteration cleans up.
        let _ = self.events.try_send(Event::Chunk {
            token_ids: vec![token],
            text,
            logprobs,
        });
        match finish {
            None => Outcome::Continue,
            Some(reason) => {
                let usage = api::Usage {
                    prompt_tokens: self.req.prompt.len() as u32,
                    completion_tokens: self.generated as u32,
                };
                tracing::debug!(id = self.id, prompt_tokens = usage.prompt_tokens, completion_tokens = usage.completion_tokens, reason = ?reason, "request finished");
                let _ = self.events.try_send(Event::Done {
                    finish_reason: reason,
                    usage,
                });
                Outcome::Finished
            }
        }
    }

    fn logprobs(&self, s: &shard::SampledToken) -> Vec<api::TokenLogprob> {
        if self.req.logprobs.is_none() {
            return Vec::new();
        }
        let top = s
            .top_ids
            .iter()
            .zip(&s.top_logprobs)
            .map(|(&token_id, &logprob)| api::TopLogprob { token_id, logprob })
            .collect();
        vec![api::TokenLogprob {
            token_id: s.token,
            logprob: s.logprob,
            top,
        }]
    }
}

impl Scheduler {
    /// Prefills the next chunk of every prompt not yet done, in admission
    /// order, within the step's token budget.
    pub(super) async fn prefill(&mut self) {
        let mut budget = self.limits.max_prefill_tokens;
        let mut chunks = Vec::new();
        for (i, r) in self.running.iter().enumerate() {
            if budget == 0 {
                break;
            }
            let len = r.prompt_left().min(budget);
            if len > 0 {
                budget -= len;
                chunks.push((i, r.prefill_chunk(len)));
            }
        }
        if chunks.is_empty() {
            return;
        }
        self.step += 1;
        tracing::debug!(
            step = self.step,
            seqs = chunks.len(),
            tokens = self.limits.max_prefill_tokens - budget,
            "prefill"
        );
        let all: Vec<usize> = chunks.iter().map(|(i, _)| *i).collect();
        let sampling: Vec<usize> = chunks
            .iter()
            .filter(|(_, c)| !c.partial)
            .map(|(i, _)| *i)
            .collect();
        let seqs = chunks.iter().map(|(_, c)| c.clone()).collect();
        let Some(group) = self.group.as_mut() else {
            return self.fail(down(), None).await;
        };
        match group
            .prefill(shard::PrefillRequest {
                step: self.step,
                seqs,
            })
            .await
        {
            Ok(tokens) => {
                for (i, c) in &chunks {
                    self.running[*i].prefilled += c.tokens.len();
                }
                self.apply(&sampling, &tokens).await
            }
            Err(e) => self.fail(e, Some(&all)).await,
        }
    }

    /// Runs one decode step over every request whose prompt is done.
    pub(super) async fn decode(&mut self) {
        let which: Vec<usize> = (0..self.running.len())
            .filter(|&i| self.running[i].decoding())
            .collect();
        if which.is_empty() {
            return;
        }
        self.step += 1;
        let seqs = which
            .iter()
            .map(|&i| self.running[i].decode_seq())
            .collect();
        let Some(group) = self.group.as_mut() else {
            return self.fail(down(), None).await;
        };
        match group
            .decode(shard::DecodeRequest {
                step: self.step,
                seqs,
            })
            .await
        {
            Ok(tokens) => self.apply(&which, &tokens).await,
            Err(e) => self.fail(e, None).await,
        }
    }

    /// Applies a step's tokens to the requests at `which`, removing finished ones.
    async fn apply(&mut self, which: &[usize], tokens: &[shard::SampledToken]) {
        if tokens.len() != which.len() {
            let reason = format!(
                "the shards returned {} tokens for {} sequences",
                tokens.len(),
                which.len()
            );
            return self
                .fail(ServeError::ShardUnavailable { rank: 0, reason }, None)
                .await;
        }
        let mut finished = Vec::new();
        for (&i, t) in which.iter().zip(tokens) {
            if let Outcome::Finished = self.running[i].accept(t, &self.tokenizer) {
                finished.push(i);
            }
        }
        self.remove(finished).await;
    }

    /// Takes the requests at `indices` out of the batch and frees their state.
    async fn remove(&mut self, mut indices: Vec<usize>) {
        if indices.is_empty() {
            return;
        }
        indices.sort_unstable_by(|a, b| b.cmp(a));
        let mut ids = Vec::with_capacity(indices.len());
        for i in indices {
            let mut r = self.running.swap_remove(i);
            self.blocks.release(&mut r.table);
            ids.push(r.id);
        }
        if let Some(group) = self.group.as_mut() {
            group.release(ids).await;
        }
    }

    /// A step failed. Bad input fails only the requests at `only`; a broken
    /// group fails everything, now and from then on.
    pub(super) async fn fail(&mut self, err: ServeError, only: Option<&[usize]>) {
        tracing::error!(error = %err, kind = err.label(), step = self.step, "step failed");
        let victims: Vec<usize> = match (&err, only) {
            (ServeError::InvalidArgument(_), Some(only)) => only.to_vec(),
            _ => (0..self.running.len()).collect(),
        };
        for &i in &victims {
            let _ = self.running[i].events.try_send(Event::Failed(err.clone()));
        }
        if !matches!(err, ServeError::InvalidArgument(_)) {
            for s in self.waiting.drain(..) {
                let _ = s.events.try_send(Event::Failed(err.clone()));
                self.queued
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
            self.failed = Some(err);
        }
        self.remove(victims).await;
        if self.failed.is_some() && self.restart.is_none() {
            self.restart_group().await;
        }
    }
}

fn down() -> ServeError {
    ServeError::ShardUnavailable {
        rank: 0,
        reason: "the shard group is down and restarting".into(),
    }
}
