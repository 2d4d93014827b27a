//! An in-process S3 server for tests: s3s over a directory (s3s-fs), served by hyper
//! on 127.0.0.1, with SigV4 auth. It can be stopped (an outage: the listener closes and
//! every connection is cut) and started again on the same port and data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub const ACCESS_KEY: &str = "strata-test-key";
pub const SECRET_KEY: &str = "strata-test-secret";
pub const BUCKET: &str = "strata-test";

/// A write request as the server saw it, with its server-side-encryption headers.
#[derive(Debug, Clone)]
pub struct WriteSeen {
    pub method: String,
    /// Path and query (`?uploads` starts a multipart upload, `?partNumber=` is a part).
    pub uri: String,
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    pub bucket_key: Option<String>,
}

pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    /// Milliseconds every request waits before it is served (a slow store).
    pub delay_ms: Arc<AtomicU64>,
    /// Every PUT and POST served, in order.
    pub writes: Arc<std::sync::Mutex<Vec<WriteSeen>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Serves `root` (bucket `BUCKET` is its subdirectory) on `port` (0 = any).
    pub async fn start(root: &Path, port: u16) -> S3Server {
        Self::start_with_delay(root, port, Arc::new(AtomicU64::new(0)), Default::default()).await
    }

    async fn start_with_delay(
        root: &Path,
        port: u16,
        delay_ms: Arc<AtomicU64>,
        writes: Arc<std::sync::Mutex<Vec<WriteSeen>>>,
    ) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs");
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("bind the S3 server");
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let delay = delay_ms.clone();
        let seen = writes.clone();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let (service, delay, seen) = (service.clone(), delay.clone(), seen.clone());
                        let slowed = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let (service, delay) = (service.clone(), delay.clone());
                            if req.method() == hyper::Method::PUT || req.method() == hyper::Method::POST {
                                let header = |name: &str| {
                                    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
                                };
                                seen.lock().unwrap().push(WriteSeen {
                                    method: req.method().to_string(),
                                    uri: req.uri().to_string(),
                                    sse: header("x-amz-server-side-encryption"),
                                    kms_key_id: header("x-amz-server-side-encryption-aws-kms-key-id"),
                                    bucket_key: header("x-amz-server-side-encryption-bucket-key-enabled"),
                                });
                            }
                            async move {
                                let ms = delay.load(Ordering::Relaxed);
                                if ms > 0 {
                                    tokio::time::sleep(Duration::from_millis(ms)).await;
                                }
                                hyper::service::Service::call(&service, req).await
                            }
                        });
                        let conn = http
                            .serve_connection(TokioIo::new(stream), slowed)
                            .into_owned();
                        conns.spawn(async move { let _ = conn.await; });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            drop(listener);
            conns.shutdown().await;
        });
        S3Server {
            addr,
            root: root.to_path_buf(),
            delay_ms,
            writes,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving: new connections are refused, open ones cut.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Serves the same data on the same port again.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = S3Server::start_with_delay(
            &self.root.clone(),
            self.addr.port(),
            self.delay_ms.clone(),
            self.writes.clone(),
        )
        .await;
    }

    /// Broker overrides that point tiered storage at this server under `prefix`.
    pub fn broker_config(&self, prefix: &str) -> Vec<String> {
        vec![
            format!("object_store.url=s3://{BUCKET}/{prefix}"),
            format!("object_store.endpoint=http://{}", self.addr),
            "object_store.allow_http=true".to_string(),
            "object_store.region=us-east-1".to_string(),
            format!("object_store.access_key_id={ACCESS_KEY}"),
            format!("object_store.secret_access_key={SECRET_KEY}"),
        ]
    }

    /// Every object file under the bucket (s3s-fs keeps its metadata beside, not in it).
    pub fn objects(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root.join(BUCKET), &mut out);
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
