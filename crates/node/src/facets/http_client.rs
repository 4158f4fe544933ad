//! [`HttpClientFacet`]: outbound HTTP for an actor (reqwest), limited to the hosts its
//! allow-list names, with a timeout per attempt, bounded retries and a response size cap.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use plexspaces_core::Facet;
use reqwest::{Method, Url};

/// What went wrong with an outbound request. Whether to retry is
/// [`HttpError::is_retryable`]; the client already retried those up to its limit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL does not parse, or is not `http`/`https`.
    #[error("bad url {0:?}")]
    BadUrl(String),
    /// The host is not on this actor's allow-list (also for a redirect's target).
    #[error("host {0:?} is not on this actor's allow-list")]
    NotAllowed(String),
    /// No answer within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed or broke.
    #[error("transport: {0}")]
    Transport(String),
    /// The response body is larger than the limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

impl HttpError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HttpError::Timeout(_) | HttpError::Transport(_))
    }
}

/// An answer (any status: a 4xx or 5xx is an answer, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers (values that are not text are left out).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// How an actor's client behaves.
#[derive(Debug, Clone)]
pub struct HttpClientOptions {
    /// Hosts the actor may call: `example.com` (that host, any port), `example.com:8080`
    /// (that port only), `*.example.com` (any subdomain). Empty: none.
    pub allow_hosts: Vec<String>,
    /// Each attempt's limit.
    pub timeout: Duration,
    /// Further attempts after a timeout, a broken connection, or a 502/503/504/429 answer,
    /// for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) only.
    pub retries: u32,
    /// Wait before the first retry; doubles each time.
    pub retry_backoff: Duration,
    /// The largest response body read.
    pub max_response_bytes: usize,
}

impl Default for HttpClientOptions {
    fn default() -> Self {
        HttpClientOptions {
            allow_hosts: Vec::new(),
            timeout: Duration::from_secs(10),
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

fn allowed(allow: &[String], url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default();
    allow.iter().any(|rule| {
        let (rule_host, rule_port) = match rule.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rule.starts_with('[') => match p.parse::<u16>() {
                Ok(p) => (h, Some(p)),
                Err(_) => (rule.as_str(), None),
            },
            _ => (rule.as_str(), None),
        };
        let rule_host = rule_host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = match rule_host.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            None => host.eq_ignore_ascii_case(rule_host),
        };
        host_ok && rule_port.is_none_or(|p| Some(p) == port)
    })
}

/// Outbound HTTP for one actor (`ctx.service::<HttpClient>()`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    options: Arc<HttpClientOptions>,
}

impl HttpClient {
    /// A client with `options`.
    pub fn new(options: HttpClientOptions) -> Result<Self, HttpError> {
        let allow = options.allow_hosts.clone();
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if allowed(&allow, attempt.url()) {
                    attempt.follow()
                } else {
                    let host = attempt.url().host_str().unwrap_or_default().to_owned();
                    attempt.error(HttpError::NotAllowed(host))
                }
            }))
            .build()
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        Ok(HttpClient {
            client,
            options: Arc::new(options),
        })
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<HttpResponse, HttpError> {
        self.request(Method::GET, url, &[], Bytes::new()).await
    }

    /// `POST url` with `body` (not retried: POST is not idempotent).
    pub async fn post(&self, url: &str, body: impl Into<Bytes>) -> Result<HttpResponse, HttpError> {
        self.request(Method::POST, url, &[], body.into()).await
    }

    /// Any request.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpResponse, HttpError> {
        let parsed = Url::parse(url).map_err(|_| HttpError::BadUrl(url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(HttpError::BadUrl(url.to_owned()));
        }
        if !allowed(&self.options.allow_hosts, &parsed) {
            return Err(HttpError::NotAllowed(
                parsed.host_str().unwrap_or_default().to_owned(),
            ));
        }
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let attempts = if idempotent {
            self.options.retries + 1
        } else {
            1
        };
        let mut backoff = self.options.retry_backoff;
        let mut attempt = 1;
        loop {
            let outcome = self.once(&method, &parsed, headers, body.clone()).await;
            let retry = match &outcome {
                Ok(r) => matches!(r.status, 429 | 502 | 503 | 504),
                Err(e) => e.is_retryable(),
            };
            if !retry || attempt >= attempts {
                return outcome;
            }
            tracing::debug!(url = %parsed, attempt, "http request retried");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
            attempt += 1;
        }
    }

    async fn once(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpResponse, HttpError> {
        let mut req = self.client.request(method.clone(), url.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        let mut resp = req.send().await.map_err(|e| self.error(e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
            .collect();
        let max = self.options.max_response_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.error(e))? {
            if body.len() + chunk.len() > max {
                return Err(HttpError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body: body.into(),
        })
    }

    fn error(&self, e: reqwest::Error) -> HttpError {
        if e.is_timeout() {
            return HttpError::Timeout(self.options.timeout);
        }
        if e.is_redirect() {
            // The redirect policy refused a host (or too many hops).
            let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            while let Some(s) = source {
                if let Some(HttpError::NotAllowed(h)) = s.downcast_ref::<HttpError>() {
                    return HttpError::NotAllowed(h.clone());
                }
                source = s.source();
            }
        }
        HttpError::Transport(e.to_string())
    }
}

/// Gives an actor an [`HttpClient`].
#[derive(Debug)]
pub struct HttpClientFacet {
    client: Arc<HttpClient>,
}

impl HttpClientFacet {
    /// A facet whose client follows `options`.
    pub fn new(options: HttpClientOptions) -> Result<Arc<Self>, HttpError> {
        Ok(Arc::new(HttpClientFacet {
            client: Arc::new(HttpClient::new(options)?),
        }))
    }
}

#[async_trait]
impl Facet for HttpClientFacet {
    fn name(&self) -> &'static str {
        "http_client"
    }

    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.client.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_matches_host_port_and_subdomains() {
        let allow: Vec<String> = ["127.0.0.1:8080", "example.com", "*.svc.local"]
            .map(String::from)
            .to_vec();
        let ok = |u: &str| allowed(&allow, &Url::parse(u).unwrap());
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(!ok("http://127.0.0.1:8081/x"));
        assert!(ok("https://example.com/"));
        assert!(ok("http://EXAMPLE.com:9/"));
        assert!(!ok("http://example.com.evil.net/"));
        assert!(!ok("http://evilexample.com/"));
        assert!(ok("http://a.svc.local/"));
        assert!(ok("http://a.b.svc.local/"));
        assert!(!ok("http://svc.local/"));
        assert!(!ok("http://xsvc.local/"));
        assert!(!allowed(&[], &Url::parse("http://127.0.0.1/").unwrap()));
    }
}
