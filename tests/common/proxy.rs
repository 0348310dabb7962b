//! An HTTP proxy in front of the simulator whose every request goes through a handler of the
//! test's own: to fail some requests, or hold answers on their way back.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;

/// The answer a handler gives.
pub type Answer = Result<Response<Full<Bytes>>, hyper::Error>;

/// Where a handler forwards what it does not answer itself.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Upstream {
    /// Sends `req` on to the upstream and returns its whole answer.
    pub async fn forward(&self, req: Request<Incoming>) -> Answer {
        let (mut parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        parts.uri = format!(
            "{}{}",
            self.base,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        )
        .parse()
        .unwrap();
        parts.headers.remove(http::header::HOST);
        let resp = self
            .client
            .request(Request::from_parts(parts, Full::new(body)))
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

/// Starts a proxy on 127.0.0.1:0 in front of `upstream_base`, answering every request with
/// `handler`; returns its base URL.
pub async fn start<F, Fut>(upstream_base: String, handler: F) -> String
where
    F: Fn(Upstream, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = Upstream {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: upstream_base,
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (upstream, handler) = (upstream.clone(), handler.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (upstream, handler) = (upstream.clone(), handler.clone());
                    async move { handler(upstream, req).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}
