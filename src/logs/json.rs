//! The JSON log line: one object per event with `timestamp` (RFC 3339, UTC),
//! `level`, `target`, `node_id`, `message`, the event's other `fields`, and `spans`
//! (outermost first, each with its `name` and fields), as `logs.format=json` writes to
//! stderr and log delivery ships.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Collects fields into a JSON object (`message` apart).
#[derive(Default)]
struct JsonVisitor {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for JsonVisitor {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// Span fields kept as a JSON object (the text format keeps its own copy).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = JsonVisitor::default();
        fields.record(&mut v);
        if let Some(m) = v.message {
            v.fields.insert("message".into(), m.into());
        }
        write!(writer, "{}", Value::Object(v.fields))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // Merges fields recorded later into the span's object.
        let mut merged: Map<String, Value> =
            serde_json::from_str(&current.fields).unwrap_or_default();
        let mut v = JsonVisitor::default();
        fields.record(&mut v);
        merged.extend(v.fields);
        current.fields = Value::Object(merged).to_string();
        Ok(())
    }
}

/// Formats each event as one JSON object on one line.
#[derive(Debug, Clone, Copy)]
pub struct JsonEvent {
    pub node_id: i32,
}

impl<S, N> FormatEvent<S, N> for JsonEvent
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut v = JsonVisitor::default();
        event.record(&mut v);
        // Written field by field so every line has the same order, timestamp first.
        let quote = |v: &str| Value::from(v).to_string();
        write!(
            writer,
            "{{\"timestamp\":{},\"level\":{},\"target\":{},\"node_id\":{},\"message\":{}",
            quote(&rfc3339_now()),
            quote(meta.level().as_str()),
            quote(meta.target()),
            self.node_id,
            quote(v.message.as_deref().unwrap_or_default()),
        )?;
        if !v.fields.is_empty() {
            write!(writer, ",\"fields\":{}", Value::Object(v.fields))?;
        }
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let mut object = Map::new();
                object.insert("name".into(), span.name().into());
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(f)) = serde_json::from_str::<Value>(&fields.fields) {
                        object.extend(f);
                    }
                }
                spans.push(Value::Object(object));
            }
        }
        if !spans.is_empty() {
            write!(writer, ",\"spans\":{}", Value::Array(spans))?;
        }
        writeln!(writer, "}}")
    }
}

/// Now as `2026-12-05T01:02:03.456Z`.
fn rfc3339_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let t = super::UtcTime::from_ms(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}
