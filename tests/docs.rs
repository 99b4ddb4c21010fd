//! The documentation stays true to the code: `docs/configuration.md` lists
//! every configuration key once, with its default, and no key that does not exist;
//! the README stays a page a newcomer reads, handing the rest to docs/.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use apex_ingest::config::Config;
use figment::Figment;
use figment::providers::{Format, Toml};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn doc(name: &str) -> String {
    repo_file(&format!("docs/{name}"))
}

/// The TOML of the document's ```toml block.
fn toml_block(text: &str) -> String {
    let start = text.find("```toml\n").expect("a ```toml block") + "```toml\n".len();
    let end = start + text[start..].find("```").expect("the block ends");
    text[start..end].to_owned()
}

#[test]
fn configuration_doc_lists_every_key_with_its_default() {
    let block = toml_block(&doc("configuration.md"));
    let documented: serde_json::Value =
        Figment::from(Toml::string(&block)).extract().expect("the documented TOML parses");
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let (mut in_doc, mut in_code) = (BTreeSet::new(), BTreeSet::new());
    support::leaf_keys(&documented, "", &mut in_doc);
    support::leaf_keys(&defaults, "", &mut in_code);
    let missing: Vec<_> = in_code.difference(&in_doc).collect();
    let unknown: Vec<_> = in_doc.difference(&in_code).collect();
    assert!(missing.is_empty(), "keys of Config missing from docs/configuration.md: {missing:?}");
    assert!(unknown.is_empty(), "keys in docs/configuration.md that Config does not have: {unknown:?}");
    // Read as the program reads it, the documented file is exactly the defaults.
    let loaded: Config =
        Figment::from(Toml::string(&block)).extract().expect("the documented TOML is a Config");
    assert_eq!(serde_json::to_value(loaded).unwrap(), defaults, "a documented value is not the default");
}

/// The README it was cut back to once grew back to 201 lines; a test keeps it short.
#[test]
fn readme_opens_with_the_two_commands_and_hands_the_rest_to_docs() {
    let readme = repo_file("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 120, "README.md is {lines} lines: keep it to 120, move the rest to docs/");
    let first_block = &readme[readme.find("```sh\n").expect("a sh block")..];
    let first_block = &first_block[..first_block[5..].find("```").expect("the block ends") + 5];
    assert!(first_block.contains("cargo run --release -- demo"), "{first_block}");
    assert!(first_block.contains("scripts/test"), "{first_block}");
    assert!(repo_file(".ci/run").contains("scripts/test"), ".ci/run must call the README's test command");
    // The table names every document under docs/, and names only files that exist.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(readme.contains(&format!("| `docs/{name}` |")), "README's table does not name docs/{name}");
    }
    for row in readme.lines().filter_map(|l| l.strip_prefix("| `")) {
        let path = row.split('`').next().unwrap();
        if path.contains('/') {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(path).exists(),
                "README names {path}, which does not exist"
            );
        }
    }
}

/// RESULTS grew to 1,079 lines of experiments; the page holds current figures and links the runs.
#[test]
fn results_is_one_page_linking_runs_that_exist() {
    let page = repo_file("load/RESULTS.md");
    let lines = page.lines().count();
    assert!(lines <= 80, "load/RESULTS.md is {lines} lines: current figures only, runs in load/results/");
    let links: Vec<&str> =
        page.split("](results/").skip(1).map(|rest| rest.split(')').next().unwrap()).collect();
    assert!(!links.is_empty(), "the page links no run");
    for link in links {
        let path = format!("load/results/{link}");
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(&path).is_file(),
            "load/RESULTS.md links {path}, which does not exist"
        );
    }
}
