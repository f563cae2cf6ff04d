//! `profile`: runs the sampler, then writes the format asked for.

use super::answer::{abandoned, Answer, Asked};
use crate::capture;
use crate::profile::formats::Symbolised;
use crate::profile::{pprof, sampler};
use manhole_wire::{Failure, ProfileFormat, ProfileRequest};
use serde_json::json;
use std::fmt::Write as _;

/// How many functions the `top` format lists.
const PROFILE_TOP_ROWS: usize = 40;

/// `profile`: samples, then writes the format asked for (or the
/// protocol's default: `folded` over JSON, `top` over text).
pub(super) fn run_profile(request: &ProfileRequest, asked: Asked<'_>) -> Result<Answer, Failure> {
    let collected = sampler::run(request, asked.client_gone)?.ok_or_else(abandoned)?;
    let symbolised = {
        let _turn = capture::turn();
        Symbolised::new(&collected)
    };
    let samples = collected.samples();
    let sampled_threads = collected
        .stacks
        .keys()
        .map(|(tid, _)| tid)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let seconds = request.duration.as_secs_f64();
    let name_of = |tid: i32| {
        collected
            .threads
            .get(&tid)
            .map_or("?", |thread| thread.name.as_str())
    };
    let mut skipped_threads: Vec<(i32, &str, u64)> = collected
        .skipped_by_thread
        .iter()
        .map(|(&tid, &looks)| (tid, name_of(tid), looks))
        .collect();
    skipped_threads.sort_unstable();
    let mut heading = format!(
        "{} profile of pid {}: {seconds} s at {} Hz, {samples} samples from {sampled_threads} threads ({} dropped)",
        request.mode.name(),
        std::process::id(),
        request.hz,
        collected.dropped,
    );
    // A look that could not be taken leaves its thread out of the picture:
    // the table and the flame graph's title say so, and whose.
    if collected.skipped > 0 {
        let whose: Vec<String> = skipped_threads
            .iter()
            .map(|(tid, name, looks)| format!("{name:?} ({tid}) {looks}"))
            .collect();
        let _ = write!(
            heading,
            "; {} looks skipped, of {}",
            collected.skipped,
            whose.join(", ")
        );
    }
    let mut unsampled: Vec<(i32, &str, &str)> = collected
        .threads
        .iter()
        .filter_map(|(tid, thread)| {
            Some((*tid, thread.name.as_str(), thread.unsampled.as_deref()?))
        })
        .collect();
    unsampled.sort_unstable();
    let render = |format: ProfileFormat| match format {
        ProfileFormat::Top => symbolised.top(&heading, PROFILE_TOP_ROWS),
        ProfileFormat::Folded => symbolised.folded(request.per_thread),
        ProfileFormat::Svg => symbolised.svg(&heading, request.per_thread, request.flame),
        ProfileFormat::Pprof => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(pprof::encode(&symbolised))
        }
    };
    let json_format = request.format.unwrap_or(ProfileFormat::Folded);
    let text_format = request.format.unwrap_or(ProfileFormat::Top);
    let data = render(json_format);
    let mut text = if text_format == json_format {
        data.clone()
    } else {
        render(text_format)
    };
    if text_format == ProfileFormat::Pprof {
        text = format!(
            "{heading}\ngzipped pprof as base64 (`base64 -d > cpu.pb.gz`; `manhole-cli {} profile --format pprof -o cpu.pb.gz` writes the file):\n{text}\n",
            std::process::id()
        );
    }
    if text_format == ProfileFormat::Top {
        for (tid, name, reason) in &unsampled {
            let _ = writeln!(text, "not sampled: thread {tid} {name:?}: {reason}");
        }
        if collected.skipped > 0 {
            let _ = writeln!(
                text,
                "{} looks at blocked threads were skipped: their stacks could not be read without a signal",
                collected.skipped
            );
        }
    }
    let mut json = json!({
        "mode": request.mode.name(),
        "format": json_format.name(),
        "seconds": seconds,
        "hz": request.hz,
        "samples": samples,
        "dropped": collected.dropped,
        "data": data,
        "elapsed_s": collected.elapsed.as_secs_f64(),
        "threads": sampled_threads,
        "skipped": collected.skipped,
        "skipped_threads": skipped_threads
            .iter()
            .map(|(tid, name, looks)| json!({"tid": tid, "name": name, "looks": looks}))
            .collect::<Vec<_>>(),
        "truncated": collected.truncated,
        "unsampled": unsampled
            .iter()
            .map(|(tid, name, reason)| json!({"tid": tid, "name": name, "reason": reason}))
            .collect::<Vec<_>>(),
    });
    if json_format == ProfileFormat::Pprof {
        json["encoding"] = json!("base64");
    }
    Ok(Answer { json, text })
}
