//! A TLS server in front of a plaintext one, as the edge of a managed service
//! (Temporal Cloud's, say) stands in front of its servers: it presents a
//! certificate, may require a client certificate from a CA (mTLS) and, for
//! gRPC, a bearer API key, and forwards what it lets through to the real
//! server behind it. With no server behind it, it only shakes hands: a
//! server whose certificate is wrong (expired) to connect to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub struct FrontOptions {
    /// The certificate (chain) and key the front presents.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require a client certificate that chains to this CA.
    pub client_ca: Option<PathBuf>,
    /// Speak HTTP/2 and require `authorization: Bearer <key>` on every gRPC call.
    pub api_key: Option<String>,
    /// The plaintext server to forward to; none: the handshake only.
    pub upstream: Option<SocketAddr>,
    /// Answer PostgreSQL's SSLRequest (8 bytes, answered `S`) before the
    /// handshake, as a PostgreSQL server does.
    pub postgres: bool,
}

pub struct TlsFront {
    pub addr: SocketAddr,
    api_key: Arc<RwLock<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    /// From now on only `key` is accepted (a key rotated at the provider).
    pub fn set_api_key(&self, key: &str) {
        *self.api_key.write().unwrap() = key.to_owned();
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server presenting the test CA's certificate that expired in 2020
/// (`expired.crt` of `scripts/tls-ca` in `tls`), with nothing behind it;
/// `postgres`: after answering PostgreSQL's SSLRequest.
pub async fn expired(tls: &Path, postgres: bool) -> TlsFront {
    start(FrontOptions {
        cert: tls.join("expired.crt"),
        key: tls.join("expired.key"),
        client_ca: None,
        api_key: None,
        upstream: None,
        postgres,
    })
    .await
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path).unwrap().map(Result::unwrap).collect()
}

/// Starts the front on a free loopback port, in the calling runtime.
pub async fn start(options: FrontOptions) -> TlsFront {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let builder = rustls::ServerConfig::builder();
    let builder = match &options.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(certs(ca));
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(roots.into()).build().unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(&options.cert), PrivateKeyDer::from_pem_file(&options.key).unwrap())
        .unwrap();
    // gRPC clients insist on HTTP/2 by ALPN; clients that offer nothing are not refused for it.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let checks_key = options.api_key.is_some();
    let api_key = Arc::new(RwLock::new(options.api_key.unwrap_or_default()));
    let keys = api_key.clone();
    let (upstream, postgres) = (options.upstream, options.postgres);
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (acceptor, api_key) = (acceptor.clone(), keys.clone());
            tokio::spawn(async move {
                if postgres && !answer_ssl_request(&mut tcp).await {
                    return;
                }
                // A refused handshake is the client's error to report, not ours.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Some(upstream) = upstream else { return };
                match checks_key {
                    true => serve_grpc(tls, upstream, api_key).await,
                    false => {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                        }
                    }
                }
            });
        }
    });
    TlsFront { addr, api_key, task }
}

async fn answer_ssl_request(tcp: &mut TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = [0u8; 8];
    tcp.read_exact(&mut request).await.is_ok() && tcp.write_all(b"S").await.is_ok()
}

type Body = Either<Incoming, Empty<Bytes>>;

/// HTTP/2 from the client, each call checked for the key and sent on to the
/// server; a call without it is answered UNAUTHENTICATED (gRPC status 16).
async fn serve_grpc(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    upstream: SocketAddr,
    key: Arc<RwLock<String>>,
) {
    let Ok(tcp) = TcpStream::connect(upstream).await else { return };
    let Ok((sender, connection)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await
    else {
        return;
    };
    tokio::spawn(connection);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut sender = sender.clone();
        // Read per call: the key may have been rotated since the connection opened.
        let expected = format!("Bearer {}", key.read().unwrap());
        let authorized =
            request.headers().get("authorization").is_some_and(|v| v.as_bytes() == expected.as_bytes());
        async move {
            if !authorized {
                return Ok(Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "16")
                    .header("grpc-message", "the API key is missing or not valid")
                    .body(Body::Right(Empty::new()))
                    .unwrap());
            }
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = format!("http://{upstream}{path}").parse().unwrap();
            let response = sender.send_request(Request::from_parts(parts, body)).await?;
            Ok::<_, hyper::Error>(response.map(Body::Left))
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}
