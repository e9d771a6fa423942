//! Telemetry in one place: the tracing subscriber (pretty or JSON), optional OpenTelemetry
//! export over OTLP/HTTP, and W3C trace-context propagation across bus hops.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::bus::Headers;
use crate::settings::{LogFormat, Settings};

/// Keeps the exporter alive; flushes spans when dropped.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("could not flush traces: {error}");
        }
    }
}

/// Installs the global subscriber. Call once, in `main`.
pub fn init(settings: &Settings, service_name: &str) -> Result<TelemetryGuard, String> {
    // Noisy dependencies log every reconnect attempt at INFO; keep them at WARN unless asked.
    let filter = EnvFilter::try_new(format!("async_nats=warn,mongodb=warn,{}", settings.log))
        .map_err(|e| format!("TTSCM_LOG is not a valid filter: {e}"))?;
    let fmt_layer = match settings.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut guard = TelemetryGuard::default();
    let otel_layer = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service_name.to_owned())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("ttscm");
            guard.provider = Some(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(ClientHangups)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| format!("cannot install the tracing subscriber: {e}"))?;
    Ok(guard)
}

/// Drops warp's ERROR "server connection error" events when the client caused them: it hung up
/// mid-request or reset the connection (every load test's end, every impatient browser).
/// Those are not the server's errors and would bury real ones; any other connection error, and
/// warp's accept errors (out of file descriptors), still log.
struct ClientHangups;

/// What hyper's `Debug` of an error caused by the client going away contains.
const HANGUP_MARKERS: &[&str] = &[
    "IncompleteMessage",
    "ConnectionReset",
    "ConnectionAborted",
    "BrokenPipe",
    "UnexpectedEof",
];

impl<S: tracing::Subscriber> Layer<S> for ClientHangups {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if !event.metadata().target().starts_with("warp::server") {
            return true;
        }
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    let text = format!("{value:?}");
                    self.0 = text.starts_with("server connection error")
                        && HANGUP_MARKERS.iter().any(|m| text.contains(m));
                }
            }
        }
        let mut hangup = Message(false);
        event.record(&mut hangup);
        !hangup.0
    }
}

struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k).collect()
    }
}

/// Writes the current span's trace context (`traceparent`) into bus headers. Without an
/// OpenTelemetry layer there is no context and a caller-supplied `traceparent` passes through.
pub fn inject_context(headers: &mut Headers) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context carried in `headers`.
pub fn set_parent_from(span: &tracing::Span, headers: &Headers) {
    if headers
        .get(ttscm_contract::subjects::HEADER_TRACEPARENT)
        .is_some()
    {
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::ClientHangups;

    /// A client hanging up is not logged as the server's error; other connection errors and
    /// accept errors still are.
    #[test]
    fn client_hangups_are_not_logged_as_errors() {
        let captured = ttscm_testkit::CapturedLog::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(ClientHangups).with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "warp::server::run", "server connection error: {:?}", "hyper::Error(IncompleteMessage)");
            tracing::error!(target: "warp::server::run", "server connection error: {:?}", "hyper::Error(Io, Os { code: 104, kind: ConnectionReset })");
            tracing::error!(target: "warp::server::run", "server connection error: {:?}", "hyper::Error(Parse(TooLarge))");
            tracing::error!(target: "warp::server::run", "accept error: {:?}", "Os { code: 24, kind: Uncategorized, message: \"Too many open files\" }");
            tracing::error!(target: "ttscm_edge", "IncompleteMessage in our own code");
        });
        let text = captured.text();
        assert!(!text.contains("IncompleteMessage\""), "{text}");
        assert!(!text.contains("ConnectionReset"), "{text}");
        assert!(text.contains("TooLarge"), "{text}");
        assert!(text.contains("Too many open files"), "{text}");
        assert!(text.contains("IncompleteMessage in our own code"), "{text}");
    }
}
