//! The OTLP exporter's HTTP client: ureq, blocking, on the exporter's own
//! thread (`export.rs`), so no async runtime is needed anywhere. TLS
//! (`https://` endpoints) through rustls with the ring provider and the
//! Mozilla roots (webpki-roots).

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// Most bytes read of a collector's answer (an OTLP answer is a few
/// bytes; a partial-success message a few hundred).
const RESPONSE_MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug)]
pub struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    /// A client whose every request (connect, send, answer) ends within
    /// `timeout`.
    pub fn new(timeout: Duration) -> UreqClient {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // The exporter classifies the status itself (retry or not).
            .http_status_as_error(false)
            .build();
        UreqClient {
            agent: config.into(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = request.map(|body| body.to_vec());
        let mut answer = self.agent.run(request)?;
        let body = answer
            .body_mut()
            .with_config()
            .limit(RESPONSE_MAX_BYTES)
            .read_to_vec()?;
        let (parts, _) = answer.into_parts();
        Ok(Response::from_parts(parts, Bytes::from(body)))
    }
}
