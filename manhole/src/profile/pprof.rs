//! `profile.proto` (github.com/google/pprof, proto/profile.proto), the
//! messages and fields a CPU profile uses.

use super::formats::Symbolised;
use manhole_wire::ProfileMode;
use std::collections::HashMap;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
    #[prost(int64, tag = "3")]
    num: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Mapping {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    memory_start: u64,
    #[prost(uint64, tag = "3")]
    memory_limit: u64,
    #[prost(int64, tag = "5")]
    filename: i64,
    #[prost(bool, tag = "7")]
    has_functions: bool,
    #[prost(bool, tag = "8")]
    has_filenames: bool,
    #[prost(bool, tag = "9")]
    has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    has_inline_frames: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    mapping_id: u64,
    #[prost(uint64, tag = "3")]
    address: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "3")]
    system_name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
}

/// The string table: index 0 is "", as the format requires.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut strings = Strings {
            table: Vec::new(),
            index: HashMap::new(),
        };
        strings.id("");
        strings
    }

    fn id(&mut self, text: &str) -> i64 {
        if let Some(&id) = self.index.get(text) {
            return id;
        }
        let id = i64::try_from(self.table.len()).unwrap_or(i64::MAX);
        self.table.push(text.to_owned());
        self.index.insert(text.to_owned(), id);
        id
    }
}

/// `profile.proto`, gzipped.
pub(crate) fn encode(profile: &Symbolised) -> Vec<u8> {
    let mut strings = Strings::new();
    let period = 1_000_000_000 / i64::from(profile.hz.max(1));
    let time_kind = match profile.mode {
        ProfileMode::Cpu => "cpu",
        ProfileMode::Wall => "wall",
    };
    let sample_type = vec![
        ValueType {
            r#type: strings.id("samples"),
            unit: strings.id("count"),
        },
        ValueType {
            r#type: strings.id(time_kind),
            unit: strings.id("nanoseconds"),
        },
    ];
    let period_type = ValueType {
        r#type: strings.id(time_kind),
        unit: strings.id("nanoseconds"),
    };
    let executable = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let mapping = vec![Mapping {
        id: 1,
        memory_start: 0,
        memory_limit: u64::MAX,
        filename: strings.id(&executable),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
    }];
    let mut functions: Vec<Function> = Vec::new();
    let mut function_ids: HashMap<(String, String), u64> = HashMap::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_ids: HashMap<u64, u64> = HashMap::new();
    let thread_key = strings.id("thread");
    let tid_key = strings.id("tid");
    let mut samples = Vec::new();
    for stack in &profile.stacks {
        let mut location_id = Vec::with_capacity(stack.locations.len());
        for location in &stack.locations {
            let id = match location_ids.get(&location.address) {
                Some(&id) => id,
                None => {
                    let lines = location
                        .lines
                        .iter()
                        .map(|line| {
                            let file = line.file.clone().unwrap_or_default();
                            let key = (line.function.clone(), file);
                            let next = functions.len() as u64 + 1;
                            let function_id = *function_ids.entry(key).or_insert_with(|| {
                                let name = strings.id(&line.function);
                                functions.push(Function {
                                    id: next,
                                    name,
                                    system_name: name,
                                    filename: strings.id(line.file.as_deref().unwrap_or("")),
                                });
                                next
                            });
                            Line {
                                function_id,
                                line: i64::from(line.line.unwrap_or(0)),
                            }
                        })
                        .collect();
                    let id = locations.len() as u64 + 1;
                    locations.push(Location {
                        id,
                        mapping_id: 1,
                        address: location.address,
                        line: lines,
                    });
                    location_ids.insert(location.address, id);
                    id
                }
            };
            location_id.push(id);
        }
        let weight = i64::try_from(stack.weight).unwrap_or(i64::MAX);
        samples.push(Sample {
            location_id,
            value: vec![weight, weight.saturating_mul(period)],
            label: vec![
                Label {
                    key: thread_key,
                    str: strings.id(&stack.thread),
                    num: 0,
                },
                Label {
                    key: tid_key,
                    str: 0,
                    num: i64::from(stack.tid),
                },
            ],
        });
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(0));
    let duration = i64::try_from(profile.elapsed_ns).unwrap_or(i64::MAX);
    let message = Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations,
        function: functions,
        string_table: strings.table,
        time_nanos: now - duration,
        duration_nanos: duration,
        period_type: Some(period_type),
        period,
    };
    let bytes = prost::Message::encode_to_vec(&message);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gzip.write_all(&bytes);
    gzip.finish().unwrap_or_default()
}

#[cfg(test)]
pub(super) fn decode(gzipped: &[u8]) -> Profile {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(&mut bytes)
        .expect("gzip");
    prost::Message::decode(bytes.as_slice()).expect("profile.proto")
}

#[cfg(test)]
impl Profile {
    pub(super) fn strings(&self) -> &[String] {
        &self.string_table
    }
    pub(super) fn sample_values(&self) -> Vec<Vec<i64>> {
        self.sample
            .iter()
            .map(|sample| sample.value.clone())
            .collect()
    }
    pub(super) fn sample_types(&self) -> Vec<(String, String)> {
        self.sample_type
            .iter()
            .map(|kind| {
                (
                    self.string_table[kind.r#type as usize].clone(),
                    self.string_table[kind.unit as usize].clone(),
                )
            })
            .collect()
    }
}
