//! Fuzz targets as plain tests, on the stable toolchain: every entry of a
//! target's corpus (libFuzzer's layout: `fuzz/corpus/<target>/`, one input
//! per file, the folder cargo-fuzz reads and grows), then a fixed number of
//! inputs mutated from them by a seeded generator. The same inputs every
//! run, so CI never flakes; a panic fails the test and names the input,
//! written to `target/fuzz-crashes/` to be added to the corpus once fixed.
//!
//! | variable | default | |
//! |---|---|---|
//! | `AMBIT_FUZZ_RUNS` | 20000 | mutated inputs per target after the corpus |
//! | `AMBIT_FUZZ_SEED` | 1 | the generator's seed (change it for new inputs) |
//!
//! A longer run, for example `AMBIT_FUZZ_RUNS=1000000 AMBIT_FUZZ_SEED=$RANDOM
//! cargo test -p ambit-onvif --test fuzz`; libFuzzer's coverage-guided runs
//! stay `cargo +nightly fuzz run <target>` in each handler's `fuzz/` folder.
//! A target that hangs hangs its test: they must not loop on any input.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Bytes that parsers care about: markup, separators, limits.
const INTERESTING: &[u8] = b"<>/\"'=&;: \n\r\t\0\xff\x7f\x80{}[],0123456789";

/// [`run`] for the fuzz target `name` of the crate at `manifest_dir`
/// (`env!("CARGO_MANIFEST_DIR")`), whose corpus is `fuzz/corpus/<name>/`.
pub fn target(manifest_dir: &str, name: &str, target: impl Fn(&[u8])) {
    let corpus = Path::new(manifest_dir).join("fuzz/corpus").join(name);
    run(name, &corpus, target);
}

/// Runs `target` on every input in `corpus` (a folder, which must hold at
/// least one), then on mutations of them; panics naming the first input
/// that made `target` panic.
pub fn run(name: &str, corpus: &Path, target: impl Fn(&[u8])) {
    let seeds = read_corpus(corpus);
    assert!(
        !seeds.is_empty(),
        "the corpus of fuzz target {name} ({}) is empty or missing",
        corpus.display()
    );
    for (path, input) in &seeds {
        check(
            name,
            &format!("corpus entry {}", path.display()),
            input,
            &target,
        );
    }
    let runs = env_number("AMBIT_FUZZ_RUNS", 20_000);
    let seed = env_number("AMBIT_FUZZ_SEED", 1);
    let mut rng = fastrand::Rng::with_seed(seed);
    for run in 0..runs {
        let input = mutate(&mut rng, &seeds);
        check(
            name,
            &format!("mutation {run} of seed {seed}"),
            &input,
            &target,
        );
    }
}

/// Runs `target` on `input`; on a panic, keeps the input and fails.
fn check(name: &str, what: &str, input: &[u8], target: &impl Fn(&[u8])) {
    if catch_unwind(AssertUnwindSafe(|| target(input))).is_ok() {
        return;
    }
    let kept = keep_crash(name, input);
    panic!(
        "fuzz target {name} panicked on {what} ({} bytes), kept in {}: {:?}",
        input.len(),
        kept.display(),
        String::from_utf8_lossy(&input[..input.len().min(256)])
    );
}

/// Writes a crashing input under `target/fuzz-crashes/` and returns its path.
fn keep_crash(name: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
    let hash: String =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(input))
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
    let path = dir.join(format!("{name}-{hash}"));
    let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
    path
}

/// The corpus's files, in name order (the order is part of "the same
/// inputs every run").
fn read_corpus(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.is_file());
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| Some((p.clone(), std::fs::read(&p).ok()?)))
        .collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One input made from the seeds: a few edits of a random seed (bytes
/// flipped, set, inserted, removed or repeated, a cut, a splice with
/// another seed).
fn mutate(rng: &mut fastrand::Rng, seeds: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    let mut data = seeds[rng.usize(..seeds.len())].1.clone();
    for _ in 0..rng.usize(1..=8) {
        let len = data.len();
        match rng.u8(..8) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                data[i] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                data[i] = INTERESTING[rng.usize(..INTERESTING.len())];
            }
            2 => {
                let i = rng.usize(..=len);
                let byte = if rng.bool() {
                    rng.u8(..)
                } else {
                    INTERESTING[rng.usize(..INTERESTING.len())]
                };
                data.insert(i, byte);
            }
            3 if len > 0 => {
                let start = rng.usize(..len);
                let end = rng.usize(start..=len.min(start + 64));
                data.drain(start..end);
            }
            4 if len > 0 => {
                let start = rng.usize(..len);
                let end = rng.usize(start..=len.min(start + 64));
                let chunk: Vec<u8> = data[start..end].to_vec();
                let at = rng.usize(..=data.len());
                data.splice(
                    at..at,
                    chunk
                        .iter()
                        .copied()
                        .cycle()
                        .take(chunk.len() * rng.usize(1..=4)),
                );
            }
            5 if len > 0 => data.truncate(rng.usize(..len)),
            6 => {
                let other = &seeds[rng.usize(..seeds.len())].1;
                if !other.is_empty() {
                    let from = rng.usize(..other.len());
                    let at = rng.usize(..=len);
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                }
            }
            _ => {
                let i = rng.usize(..=len);
                let value = [
                    b"-1".as_slice(),
                    b"4294967296",
                    b"99999999999999999999",
                    b"\xff\xff",
                ][rng.usize(..4)];
                data.splice(i..i, value.iter().copied());
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_the_same_for_the_same_seed() {
        let seeds = vec![(PathBuf::from("a"), b"<a>hello</a>".to_vec())];
        let make = || {
            let mut rng = fastrand::Rng::with_seed(7);
            (0..50)
                .map(|_| mutate(&mut rng, &seeds))
                .collect::<Vec<_>>()
        };
        assert_eq!(make(), make());
        assert!(make().iter().any(|m| m != &seeds[0].1), "they mutate");
    }

    #[test]
    fn a_panicking_target_fails_naming_the_input() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temp dir: {e}"));
        std::fs::write(dir.path().join("seed"), b"ok").unwrap_or_else(|e| panic!("{e}"));
        let outcome = catch_unwind(|| {
            run("selftest", dir.path(), |data| {
                assert!(data.len() < 3, "long");
            });
        });
        let message = outcome
            .err()
            .and_then(|e| e.downcast::<String>().ok())
            .map(|s| *s)
            .unwrap_or_default();
        assert!(
            message.contains("fuzz target selftest panicked on mutation"),
            "{message}"
        );
    }
}
