//! The house reads as its data path: every module of `src/` imports only
//! modules of its own layer or below (the table in `LAYERS`), and no file
//! imports, directly or around a loop, a file that imports it back. Read from
//! the source with `syn`: every path starting `crate::` or `super::`, in `use`
//! items and in code (paths in attribute strings, like serde's `with`, are not seen).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Top-level modules from the bottom up; a module may use its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["config", "telemetry"],
    &["model", "places"],
    &["pipeline"],
    &["batch"],
    &["metrics"],
    &["store"],
    &["saga"],
    &["orchestrate"],
    &["kafka"],
    &["source", "verify", "edge", "poll", "query", "top"],
    &["app"],
    &["cli"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("src/{module} is in no layer of tests/architecture.rs: place it in LAYERS"))
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `[a, b]`.
fn module_of(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::…` / `super::…` path of a file outside `#[cfg(test)]` items, absolute.
struct Paths<'a> {
    module: &'a [String],
    found: Vec<Vec<String>>,
}

impl Paths<'_> {
    fn absolute(&self, segments: Vec<String>) -> Option<Vec<String>> {
        let mut base: Vec<String> = self.module.to_vec();
        let mut rest = segments.into_iter().peekable();
        match rest.peek().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest.next();
            }
            Some("super") => {
                while rest.peek().is_some_and(|s| s == "super") {
                    base.pop();
                    rest.next();
                }
            }
            _ => return None,
        }
        base.extend(rest);
        Some(base)
    }

    fn use_tree(&mut self, prefix: Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                let mut next = prefix;
                next.push(p.ident.to_string());
                self.use_tree(next, &p.tree);
            }
            syn::UseTree::Name(n) => self.push([prefix, vec![n.ident.to_string()]].concat()),
            syn::UseTree::Rename(r) => self.push([prefix, vec![r.ident.to_string()]].concat()),
            syn::UseTree::Glob(_) => self.push(prefix),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix.clone(), t)),
        }
    }

    fn push(&mut self, segments: Vec<String>) {
        if let Some(path) = self.absolute(segments) {
            self.found.push(path);
        }
    }
}

/// `#[cfg(test)]` (and `cfg(any(test, ...))`): test code may reach anywhere.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && matches!(&a.meta, syn::Meta::List(l) if l.tokens.to_string().contains("test"))
    })
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            _ => &Vec::new(),
        };
        if !is_test(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
}

/// For each file (as a module path), the files it uses.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f, &src)).collect();
    // The longest module that is a file and prefixes the path (the rest names items).
    let file_of =
        |path: &[String]| (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains(m));
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(file, &src);
        if module.is_empty() {
            continue; // lib.rs and main.rs only declare and dispatch
        }
        let ast = syn::parse_file(&std::fs::read_to_string(file).unwrap()).unwrap();
        let mut paths = Paths { module: &module, found: Vec::new() };
        paths.visit_file(&ast);
        let used: BTreeSet<Vec<String>> =
            paths.found.iter().filter_map(|p| file_of(p)).filter(|m| *m != module).collect();
        graph.insert(module, used);
    }
    graph
}

#[test]
fn every_module_imports_only_its_layer_and_below() {
    let graph = graph();
    // The reading sees imports at all: the saga writer uses the stores and the model.
    let writer = &graph[&["saga".to_owned(), "writer".to_owned()][..]];
    assert!(
        writer.contains(&vec!["store".to_owned()]) && writer.contains(&vec!["model".to_owned()]),
        "{writer:?}"
    );
    let mut upward = Vec::new();
    for (file, used) in graph {
        for target in used {
            let (from, to) = (layer_of(&file[0]), layer_of(&target[0]));
            if to > from {
                upward.push(format!(
                    "{} uses {} (layer {from} uses layer {to})",
                    file.join("::"),
                    target.join("::")
                ));
            }
        }
    }
    assert!(upward.is_empty(), "imports that run back up the data path:\n{}", upward.join("\n"));
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let graph = graph();
    // Depth-first search for a path back to the start, from every file.
    let mut loops = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    let mut names: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                    names.sort();
                    loops.insert(names.join(" -> "));
                } else if seen.insert(next.clone()) {
                    stack.push((next.clone(), [trail.clone(), vec![next.clone()]].concat()));
                }
            }
        }
    }
    assert!(loops.is_empty(), "import loops:\n{}", loops.into_iter().collect::<Vec<_>>().join("\n"));
}
