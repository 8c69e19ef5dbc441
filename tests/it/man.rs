//! The man pages in docs/man are what the CLI definition generates today.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::harness::pod::binary;

/// Every `*.1` file of `dir`, by name.
fn pages(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, text)
        })
        .collect()
}

#[test]
fn man_pages_in_docs_match_the_cli() {
    let fresh = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary())
        .arg("man")
        .arg(fresh.path())
        .output()
        .expect("run ochopod man");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = pages(fresh.path());
    let committed = pages(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man"));
    for name in ["ochopod.1", "ochopod-run.1", "ochopod-ctl.1", "ochopod-ctl-ls.1"] {
        assert!(
            generated.contains_key(name),
            "{name} not generated: {:?}",
            generated.keys()
        );
    }
    assert!(
        !generated.contains_key("ochopod-man.1"),
        "the man command is hidden"
    );
    let fix = "the CLI changed: regenerate the man pages with\n  \
               rm -f docs/man/*.1 && cargo run --quiet -- man docs/man";
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "{fix}"
    );
    for (name, text) in &generated {
        assert!(committed[name] == *text, "docs/man/{name} is out of date; {fix}");
    }
    let dockerfile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile.base"))
        .expect("Dockerfile.base");
    assert!(
        dockerfile.contains("COPY docs/man/ /usr/local/share/man/man1/"),
        "Dockerfile.base installs the pages"
    );
}
