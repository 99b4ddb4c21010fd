//! The documentation stays true to the code: `docs/configuration.md` lists
//! every configuration key once, with its default, and no key that does not exist.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use apex_ingest::config::Config;
use figment::Figment;
use figment::providers::{Format, Toml};

fn doc(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name)).unwrap()
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
