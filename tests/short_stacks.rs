//! `stacks --short` folds the runtime's frames the same with full debug
//! info and with `debug = "line-tables-only"` (the setting the guide
//! recommends for release builds), whose inlined frames have short names
//! (`lock`, `{closure#0}`) and are known by their file. Compares
//! `examples/tokio_service` built both ways; `scripts/other-targets`
//! builds the second and names it in `MANHOLE_LINE_TABLES_EXAMPLE`.

mod support;

use support::Service;

fn short_stacks_of(service: &Service) -> String {
    service.text().ask("stacks --short")
}

#[test]
fn short_stacks_fold_alike_with_line_tables_only() {
    // `cargo test --workspace` runs this file too, before the second build;
    // scripts/test runs it again through scripts/other-targets, with it.
    let Some(line_tables) = std::env::var_os("MANHOLE_LINE_TABLES_EXAMPLE") else {
        eprintln!("skipped here: scripts/other-targets runs it with the second build");
        return;
    };
    let full = Service::spawn("tokio_service", &[], None);
    full.wait_for_socket();
    let mut command = std::process::Command::new(line_tables);
    command.env_remove("MANHOLE");
    let brief = Service::spawn_command(command, None);
    brief.wait_for_socket();
    let (full_text, brief_text) = (short_stacks_of(&full), short_stacks_of(&brief));
    for text in [&full_text, &brief_text] {
        assert!(!text.contains("parking_lot"), "{text}");
        assert!(text.contains(" runtime frames"), "{text}");
    }
    let (full_lines, brief_lines) = (full_text.lines().count(), brief_text.lines().count());
    assert!(
        full_lines.abs_diff(brief_lines) <= 2,
        "{full_lines} lines with full debug info, {brief_lines} with line tables only:\n{full_text}\n---\n{brief_text}"
    );
}
