//! The standard gRPC health service of a running coordinator.

use anyhow::Result;
use tessera_e2e::{setup, Coordinator, ServeOptions};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The generation service's full name, as health checks name it.
const GENERATION_SERVICE: &str = "tessera.v1.Generation";

#[tokio::test]
async fn health_reports_serving() -> Result<()> {
    let Some(setup) = setup()? else { return Ok(()) };
    let coordinator = Coordinator::start(&setup, &ServeOptions::tp(1))?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", coordinator.addr))?
        .timeout(std::time::Duration::from_secs(10))
        .connect()
        .await?;
    let mut health = HealthClient::new(channel);

    // The whole server ("") and the generation service by name.
    for service in ["", GENERATION_SERVICE] {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let status = health.check(request).await?.into_inner().status;
        assert_eq!(
            ServingStatus::try_from(status).ok(),
            Some(ServingStatus::Serving),
            "health of {service:?} is {status}"
        );
    }

    // A service the server does not have is NOT_FOUND, not SERVING.
    let request = HealthCheckRequest {
        service: "tessera.v1.NoSuchService".to_owned(),
    };
    let err = health.check(request).await.err();
    assert_eq!(err.map(|s| s.code()), Some(tonic::Code::NotFound));
    Ok(())
}
