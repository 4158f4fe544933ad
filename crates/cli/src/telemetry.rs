//! Logging to stderr and, when `otlp.endpoint` is set, span export over OTLP/HTTP
//! (protobuf) with a batch exporter (cargo feature `otlp`).

use plexspaces_node::OtlpConfig;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// What must be flushed before the process exits.
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes buffered spans and stops the exporter (a no-op without export).
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider {
            // The batch processor's shutdown blocks until the last export is done.
            match tokio::task::spawn_blocking(move || provider.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("warning: flushing OTLP spans failed: {e}"),
                Err(e) => eprintln!("warning: flushing OTLP spans failed: {e}"),
            }
        }
    }
}

/// Installs the global subscriber: the log filter from `PLEXSPACES_LOG` (or `RUST_LOG`,
/// default `info`) for stderr, plus the OTLP layer (INFO spans and up) if configured.
pub fn init(otlp: &OtlpConfig) -> Result<Telemetry, String> {
    let filter = std::env::var("PLEXSPACES_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(tracing_subscriber::EnvFilter::new(filter));
    let registry = tracing_subscriber::registry().with(fmt);

    #[cfg(feature = "otlp")]
    {
        let (layer, provider) = match otlp.traces_url() {
            Some(url) => {
                let (layer, provider) = otlp_layer(&url, &otlp.service_name)?;
                (Some(layer), Some(provider))
            }
            None => (None, None),
        };
        let _ = registry.with(layer).try_init();
        if let Some(url) = otlp.traces_url() {
            tracing::info!(endpoint = %url, service_name = %otlp.service_name, "OTLP span export on");
        }
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otlp"))]
    {
        if otlp.endpoint.is_some() {
            return Err(
                "otlp.endpoint is set but this plexspaces was built without the `otlp` feature"
                    .into(),
            );
        }
        let _ = registry.try_init();
        Ok(Telemetry {})
    }
}

#[cfg(feature = "otlp")]
fn otlp_layer<S>(
    url: &str,
    service_name: &str,
) -> Result<
    (
        impl tracing_subscriber::Layer<S>,
        opentelemetry_sdk::trace::SdkTracerProvider,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| format!("otlp.endpoint {url}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("plexspaces");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    Ok((layer, provider))
}
