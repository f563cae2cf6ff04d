//! The events the layer keeps: each one's message and fields, cut to a
//! bounded size, and the ring of the newest, bounded in count and bytes.

use crate::os::process::rfc3339_with;
use ::tracing_core::field::{Field, Visit};
use ::tracing_core::Event;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A message is cut to this many bytes when kept.
const MAX_MESSAGE: usize = 16 * 1024;
/// A field's value is cut to this many bytes when kept.
const MAX_FIELD: usize = 4 * 1024;

fn level_name(level: &::tracing_core::Level) -> &'static str {
    match *level {
        ::tracing_core::Level::ERROR => "ERROR",
        ::tracing_core::Level::WARN => "WARN",
        ::tracing_core::Level::INFO => "INFO",
        ::tracing_core::Level::DEBUG => "DEBUG",
        ::tracing_core::Level::TRACE => "TRACE",
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary, marking
/// the cut.
pub(super) fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

struct Fields {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let mut text = format!("{value:?}");
            cut(&mut text, MAX_FIELD);
            self.fields
                .insert(field.name().to_owned(), Value::String(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let mut text = value.to_owned();
            cut(&mut text, MAX_FIELD);
            self.fields
                .insert(field.name().to_owned(), Value::String(text));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().to_owned(), json!(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().to_owned(), json!(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().to_owned(), json!(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().to_owned(), json!(value));
    }
}

/// One event kept.
pub(crate) struct Record {
    pub(super) seq: u64,
    /// Seconds since the epoch.
    time: f64,
    level: &'static str,
    target: String,
    message: String,
    fields: Map<String, Value>,
    bytes: usize,
}

impl Record {
    /// `{"seq","time","level","target","message","fields"}`.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "time": rfc3339_with(self.time, 6),
            "level": self.level,
            "target": self.target,
            "message": self.message,
            "fields": self.fields,
        })
    }

    /// Seconds since the epoch.
    pub(crate) fn time(&self) -> f64 {
        self.time
    }

    pub(crate) fn level(&self) -> &'static str {
        self.level
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// `TIME LEVEL target: message key=value ...`, one line, as
    /// `manhole-cli` prints it from the JSON too.
    pub(crate) fn to_line(&self) -> String {
        manhole_wire::log_event_line(&self.to_json())
    }
}

/// The events kept, oldest first, bounded in count and bytes.
pub(super) struct Ring {
    pub(super) events: VecDeque<Arc<Record>>,
    pub(super) bytes: usize,
    pub(super) capacity: usize,
    pub(super) max_bytes: usize,
    pub(super) next_seq: u64,
}

impl Ring {
    pub(super) fn push(&mut self, record: Arc<Record>) {
        while !self.events.is_empty()
            && (self.events.len() >= self.capacity || self.bytes + record.bytes > self.max_bytes)
        {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.bytes;
            }
        }
        self.bytes += record.bytes;
        self.events.push_back(record);
    }
}

impl Record {
    /// The event as kept, its `seq` still to be given under the ring's
    /// lock.
    pub(super) fn from_event(event: &Event<'_>) -> Record {
        let metadata = event.metadata();
        let mut visitor = Fields {
            message: String::new(),
            fields: Map::new(),
        };
        event.record(&mut visitor);
        let Fields {
            mut message,
            fields,
        } = visitor;
        cut(&mut message, MAX_MESSAGE);
        let target = metadata.target().to_owned();
        let bytes = 64
            + message.len()
            + target.len()
            + fields
                .iter()
                .map(|(key, value)| key.len() + value.as_str().map_or(16, str::len))
                .sum::<usize>();
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        Record {
            seq: 0,
            time,
            level: level_name(metadata.level()),
            target,
            message,
            fields,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_within_count_and_bytes() {
        let record = |seq: u64, bytes: usize| {
            Arc::new(Record {
                seq,
                time: 0.0,
                level: "INFO",
                target: "t".to_owned(),
                message: String::new(),
                fields: Map::new(),
                bytes,
            })
        };
        let mut ring = Ring {
            events: VecDeque::new(),
            bytes: 0,
            capacity: 3,
            max_bytes: 1000,
            next_seq: 1,
        };
        for seq in 1..=5 {
            ring.push(record(seq, 100));
        }
        let seqs: Vec<u64> = ring.events.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        ring.push(record(6, 950));
        let seqs: Vec<u64> = ring.events.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [6], "the bytes bound drops the oldest");
        assert_eq!(ring.bytes, 950);
    }
}
