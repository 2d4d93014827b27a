//! The Prometheus registry and the `/metrics` HTTP endpoint (`metrics.listener`).
//! Modules own their counters and register them here at start-up; this module only
//! encodes and serves them. `topic` holds Kafka's per-topic counters, which every
//! layer that moves a topic's bytes adds to.

pub mod request;
pub mod topic;

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// One value per topic, sorted by topic, and their total: what collectors build at a
/// scrape for a per-topic gauge.
#[derive(Debug, Default)]
pub struct PerTopic {
    values: std::collections::BTreeMap<String, i64>,
}

impl PerTopic {
    pub fn add(&mut self, topic: &str, n: i64) {
        match self.values.get_mut(topic) {
            Some(v) => *v += n,
            None => {
                self.values.insert(topic.to_string(), n);
            }
        }
    }

    pub fn total(&self) -> i64 {
        self.values.values().sum()
    }
}

/// Writes a gauge with one series per topic, and a topic-less total when `total`.
pub fn encode_per_topic(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    name: &str,
    help: &str,
    values: &PerTopic,
    total: bool,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    if total {
        metric.encode_gauge(&values.total())?;
    }
    for (topic, value) in &values.values {
        let labels = [("topic", topic.as_str())];
        metric.encode_family(&labels)?.encode_gauge(value)?;
    }
    Ok(())
}

/// The shared registry; locked only to register and to encode a scrape.
pub type SharedRegistry = Arc<Mutex<Registry>>;

pub fn new_registry() -> SharedRegistry {
    Arc::new(Mutex::new(Registry::default()))
}

/// Binds `addr` (so a bad `metrics.listener` fails start-up) and returns the bound
/// listener for [`serve`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` until `shutdown`; anything else is 404.
pub async fn serve(listener: TcpListener, registry: SharedRegistry, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint listening");
    }
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &registry)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %e, "metrics connection ended");
            }
        });
    }
}

fn respond(
    req: &Request<hyper::body::Incoming>,
    registry: &SharedRegistry,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found; try /metrics\n")))
            .expect("static response");
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry.lock()) {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from(e.to_string())))
            .expect("static response");
    }
    Response::builder()
        .header(
            hyper::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}
