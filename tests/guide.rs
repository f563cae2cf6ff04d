//! The guide holds together: the README is a front page under 300 lines
//! that links every file of `docs/`, and every relative link in the README,
//! `docs/` and the other top-level documents names a file that exists and,
//! with `#anchor`, a heading in it.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let mut documents: Vec<PathBuf> = ["README.md", "SECURITY.md", "PROTOCOL.md", "BENCHMARKS.md"]
        .iter()
        .map(|name| root().join(name))
        .collect();
    let mut guide: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    guide.sort();
    documents.extend(guide);
    documents
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, and only
/// letters, digits, `-` and `_` kept.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// The relative links of a Markdown text, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else {
                break;
            };
            let target = &after[..end];
            if !target.starts_with("http") && !target.contains(' ') {
                found.push(target.to_owned());
            }
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn the_readme_is_a_front_page_that_links_every_guide_file() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines < 300, "README.md has {lines} lines");
    let linked = links(&readme);
    for document in documents() {
        let Ok(relative) = document.strip_prefix(root().join("docs")) else {
            continue;
        };
        let name = format!("docs/{}", relative.display());
        assert!(
            linked
                .iter()
                .any(|link| link.split('#').next() == Some(name.as_str())),
            "{name} is not linked from README.md"
        );
    }
}

#[test]
fn every_relative_link_names_a_file_and_a_heading_that_exist() {
    let mut broken = Vec::new();
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        let base = document.parent().unwrap();
        for link in links(&text) {
            let (path, heading) = match link.split_once('#') {
                Some((path, heading)) => (path, Some(heading)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                document.clone()
            } else {
                base.join(path)
            };
            if !Path::new(&target).exists() {
                broken.push(format!("{}: {link} (no such file)", document.display()));
                continue;
            }
            if let Some(heading) = heading {
                if target.is_file() {
                    let text = std::fs::read_to_string(&target).unwrap();
                    if !anchors(&text).iter().any(|known| known == heading) {
                        broken.push(format!("{}: {link} (no such heading)", document.display()));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
