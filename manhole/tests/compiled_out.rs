//! With the `off` feature, no manhole can be installed. Run by
//! `scripts/test` as `cargo test -p manhole --features off --test compiled_out`.

#![cfg(feature = "off")]

/// Registered as in any program; nothing can ever call it.
#[manhole::command]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[test]
fn nothing_is_installed_and_no_socket_appears() {
    let path = std::env::temp_dir().join(format!("manhole-off-{}", std::process::id()));
    let installed = manhole::Options::new().socket_path(&path).install();
    assert!(matches!(installed, Err(manhole::Error::CompiledOut)));
    assert!(!path.exists());
    assert_eq!(
        manhole::Error::CompiledOut.to_string(),
        "compiled out: manhole was built with its `off` feature"
    );
    assert_eq!(add(1, 2), 3);
    assert!(!manhole::stacks().threads.is_empty(), "stacks still work");
}
