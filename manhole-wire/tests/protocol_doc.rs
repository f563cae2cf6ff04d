//! PROTOCOL.md's tables and the wire contract's types say the same thing:
//! the text commands, the JSON methods with their params, and the reasons
//! with their codes. Change one without the other and this fails.

use manhole_wire::{Builtin, Reason};
use std::collections::BTreeSet;

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    std::fs::read_to_string(path).expect("PROTOCOL.md beside the workspace root")
}

/// The table rows of the section that starts at `heading`, up to the next
/// heading, as their cells.
fn rows(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?} in PROTOCOL.md"));
    let section = &doc[start + heading.len() + 2..];
    let end = section.find("\n#").unwrap_or(section.len());
    section[..end]
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| ---"))
        .skip(1) // the header row
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                // A `|` inside a cell is escaped, as Markdown tables need.
                .map(|cell| cell.trim().replace("\\|", "|"))
                .collect()
        })
        .collect()
}

fn first_cells(rows: &[Vec<String>]) -> BTreeSet<String> {
    rows.iter().map(|row| row[0].clone()).collect()
}

#[test]
fn the_text_command_table_lists_every_text_builtin() {
    let documented = first_cells(&rows(&protocol_md(), "## Text"));
    let expected: BTreeSet<String> = Builtin::text_commands()
        .map(|builtin| format!("`{}`", builtin.spec().usage.replace(", ", "`, `")))
        .collect();
    assert_eq!(documented, expected);
}

#[test]
fn the_method_table_lists_every_json_method_with_its_params() {
    let documented: BTreeSet<(String, String)> = rows(&protocol_md(), "## JSON-RPC 2.0")
        .into_iter()
        .filter(|row| row.len() >= 3)
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = Builtin::json_methods()
        .map(|builtin| {
            let spec = builtin.spec();
            let params: Vec<String> = spec
                .params
                .iter()
                .map(|param| {
                    let mark = if param.required { "" } else { "?" };
                    format!("\"{}\"{mark}", param.name)
                })
                .collect();
            (
                format!("`{}`", spec.name),
                format!("`{{{}}}`", params.join(",")),
            )
        })
        .collect();
    assert_eq!(documented, expected);
}

#[test]
fn the_reason_table_lists_every_reason_with_its_code() {
    let documented: Vec<(String, String)> = rows(&protocol_md(), "### Error codes and reasons")
        .into_iter()
        .filter(|row| row.len() == 3)
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let expected: Vec<(String, String)> = Reason::ALL
        .iter()
        .map(|reason| (format!("`{reason}`"), reason.code().to_string()))
        .collect();
    assert_eq!(documented, expected);
}
