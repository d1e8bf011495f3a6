//! An independent verifier, written in Python from schemas/FORMAT.md alone
//! (tests/interop/verify_segment.py), agrees with kiroku on every test vector: the valid
//! segments verify in chain order, and each invalid one fails at the offset and with the
//! problem `schemas/vectors/expected.json` states.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn python() -> PathBuf {
    let p = std::env::var_os("KIROKU_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(p.exists(), "{} is missing: run scripts/test.sh, which installs the interop venv", p.display());
    p
}

fn run(args: &[&str]) -> (bool, String) {
    let vectors = repo().join("schemas/vectors");
    let out = Command::new(python())
        .arg(repo().join("tests/interop/verify_segment.py"))
        .arg("signer.vkey")
        .args(args)
        .current_dir(&vectors)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_python_verifier_agrees_with_kiroku_on_every_vector() {
    let (ok, text) = run(&["valid-0.seg", "valid-5.seg"]);
    assert!(ok, "{text}");
    assert_eq!(text.lines().collect::<Vec<_>>(), ["OK 5", "OK 7"]);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("schemas/vectors/expected.json")).unwrap()).unwrap();
    let cases = expected["invalid"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let (ok, text) = run(&[file]);
        assert!(!ok, "{file} must fail: {text}");
        let words: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(words[0], "FAIL", "{file}: {text}");
        assert_eq!(words[1], case["offset"].to_string(), "{file}: offset");
        assert_eq!(words[3], case["problem"].as_str().unwrap(), "{file}: problem");
    }
}
