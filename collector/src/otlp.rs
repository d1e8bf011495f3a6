//! OTLP/HTTP export of the layer's spans and the journal's metrics, for `kiroku proxy
//! --otlp-endpoint URL`. Nothing is exported unless an endpoint is configured.
//!
//! The exporters use a blocking HTTP client on their own threads: install before the
//! async runtime starts and shut down after it stops.

use std::time::Duration;

use opentelemetry::global;
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::error::CliError;

/// Installed providers; [`OtlpGuard::shutdown`] flushes what is pending.
#[derive(Debug)]
pub struct OtlpGuard {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

/// Install global tracer and meter providers exporting to `endpoint`
/// (`http://host:4318`; `/v1/traces` and `/v1/metrics` are appended).
pub fn install(endpoint: &str, service_name: &str, metrics_interval: Duration) -> Result<OtlpGuard, CliError> {
    let base = endpoint.trim_end_matches('/');
    let bad = |e: opentelemetry_otlp::ExporterBuildError| CliError::Usage(format!("--otlp-endpoint {endpoint}: {e}"));
    let resource = Resource::builder().with_service_name(service_name.to_owned()).build();
    let spans = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/traces"))
        .build()
        .map_err(bad)?;
    let tracer = SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
    let metrics = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/metrics"))
        .build()
        .map_err(bad)?;
    let meter = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics).with_interval(metrics_interval).build())
        .with_resource(resource)
        .build();
    global::set_tracer_provider(tracer.clone());
    global::set_meter_provider(meter.clone());
    Ok(OtlpGuard { tracer, meter })
}

impl OtlpGuard {
    /// Export what is pending and stop.
    pub fn shutdown(self) {
        if let Err(e) = self.tracer.shutdown() {
            tracing::warn!(target: "kiroku::otlp", "flushing spans: {e}");
        }
        if let Err(e) = self.meter.shutdown() {
            tracing::warn!(target: "kiroku::otlp", "flushing metrics: {e}");
        }
    }
}
