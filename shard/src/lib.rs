//! A Tessera shard: one rank's slice of a Llama-family model, its KV cache,
//! and the sampler. The same code runs every rank of a tensor-parallel group;
//! ranks exchange activations through a [`collective::Collective`].

pub mod cli;
pub mod collective;
pub mod generate;
pub mod group;
pub mod kv_cache;
pub mod model;
pub mod sampling;
pub mod serve;
pub mod worker;
