//! The exported descriptor set describes both packages, and server reflection
//! accepts it.

use prost::Message;
use prost_types::FileDescriptorSet;

/// The method names of `service` in the descriptor set, in declaration order.
fn methods(fds: &FileDescriptorSet, package: &str, service: &str) -> Vec<String> {
    fds.file
        .iter()
        .filter(|file| file.package() == package)
        .flat_map(|file| file.service.iter())
        .filter(|svc| svc.name() == service)
        .flat_map(|svc| svc.method.iter().map(|m| m.name().to_owned()))
        .collect()
}

#[test]
fn descriptor_set_holds_both_services() -> anyhow::Result<()> {
    let fds = FileDescriptorSet::decode(tessera_proto::FILE_DESCRIPTOR_SET)?;

    let public = methods(&fds, "tessera.v1", "Generation");
    let expected = [
        "Generate",
        "GenerateStream",
        "Chat",
        "ChatStream",
        "Tokenize",
        "ModelInfo",
    ];
    assert_eq!(public, expected);

    let shard = methods(&fds, "tessera.shard.v1", "Shard");
    let expected = [
        "Info", "Health", "Join", "Prefill", "Decode", "Release", "Shutdown",
    ];
    assert_eq!(shard, expected);
    Ok(())
}

#[test]
fn descriptor_set_keeps_proto_comments() -> anyhow::Result<()> {
    let fds = FileDescriptorSet::decode(tessera_proto::FILE_DESCRIPTOR_SET)?;
    let has_comments = fds
        .file
        .iter()
        .filter_map(|file| file.source_code_info.as_ref())
        .flat_map(|info| info.location.iter())
        .any(|loc| loc.leading_comments().contains("Generates a completion"));
    assert!(has_comments, "source info with comments was dropped");
    Ok(())
}

#[test]
fn reflection_accepts_descriptor_set() -> anyhow::Result<()> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tessera_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    Ok(())
}

#[test]
fn service_names_match_packages() {
    use tessera_proto::shard::v1::shard_server;
    use tessera_proto::v1::generation_server;

    assert_eq!(generation_server::SERVICE_NAME, "tessera.v1.Generation");
    assert_eq!(shard_server::SERVICE_NAME, "tessera.shard.v1.Shard");
}

#[test]
fn prompt_oneof_round_trips() -> anyhow::Result<()> {
    use tessera_proto::v1::{generate_request::Prompt, GenerateRequest, TokenIds};

    let request = GenerateRequest {
        prompt: Some(Prompt::TokenIds(TokenIds { ids: vec![1, 2, 3] })),
        ..Default::default()
    };
    let decoded = GenerateRequest::decode(request.encode_to_vec().as_slice())?;
    assert_eq!(decoded, request);
    Ok(())
}
