//! Bounded fuzzing of every parser a user's file reaches: h5ad (both the in-memory path and the
//! page's random-access path), CSV/TSV and the model card. Seeded mutations of the real fixtures'
//! bytes plus hand-made hostile names and shapes; each case must end in data or a `ReadError` that
//! names the file, never a panic or a hang. A panic is caught and reported with its seed, so
//! `FUZZ_SEED=<seed> cargo test --release --test fuzz_readers` replays it. Each reader has a time
//! budget (all three together stay well under two minutes) and an iteration cap.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use mamba_perturb::io::h5ad_write::{self, AnnData, Column, Frame};
use mamba_perturb::io::{self, CsrMatrix, FileSource, ReadOptions};
use mamba_perturb::predict::Predictor;

/// A case taking longer than this is a hang (the slowest honest case takes well under a second).
const HANG: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// splitmix64: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const INTERESTING: [u64; 9] = [0, 1, 0xff, 0x7fff_ffff, 0xffff_ffff, 5_000_000, 1 << 40, i64::MAX as u64, u64::MAX];

/// A few random edits; half of them land in the first 4 KiB, where HDF5 keeps most metadata.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        if b.is_empty() {
            b.push(rng.next() as u8);
        }
        let len = b.len();
        let pos = if rng.below(2) == 0 { rng.below(len.min(4096)) } else { rng.below(len) };
        match rng.below(8) {
            0 => b[pos] ^= 1 << rng.below(8),
            1 => b[pos] = INTERESTING[rng.below(INTERESTING.len())] as u8,
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let n = [1, 2, 4, 8][rng.below(4)].min(len - pos);
                b[pos..pos + n].copy_from_slice(&v[..n]);
            }
            3 => b.truncate(pos),
            4 => {
                let end = (pos + 1 + rng.below(64)).min(len);
                let chunk = b[pos..end].to_vec();
                let at = rng.below(len);
                b.splice(at..at, chunk);
            }
            5 => {
                let end = (pos + 1 + rng.below(64)).min(len);
                b.drain(pos..end);
            }
            6 => {
                let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                b.splice(pos..pos, bytes);
            }
            _ => {
                // Text-shaped edits: a delimiter, quote, newline or sign where it hurts.
                let text = b",\t\"\n\r-.e0";
                b[pos] = text[rng.below(text.len())];
            }
        }
    }
    b
}

/// Runs cases on a worker thread, catching panics and watching for hangs.
struct Fuzz {
    name: &'static str,
    failures: Arc<Mutex<Vec<String>>>,
    cases: Arc<AtomicU64>,
    /// Cases that read without error (the rest ended in a clear error).
    read: Arc<AtomicU64>,
}

impl Fuzz {
    fn run(name: &'static str, budget: Duration, body: impl FnOnce(&Fuzz, Instant) + Send + 'static) {
        let fuzz = Fuzz { name, failures: Arc::default(), cases: Arc::default(), read: Arc::default() };
        let (failures, cases, read) = (fuzz.failures.clone(), fuzz.cases.clone(), fuzz.read.clone());
        let started = Instant::now();
        let deadline = started + budget;
        let worker = std::thread::spawn(move || body(&fuzz, deadline));
        let (mut last, mut last_change) = (u64::MAX, Instant::now());
        while !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
            let now = cases.load(Ordering::Relaxed);
            if now != last {
                (last, last_change) = (now, Instant::now());
            }
            assert!(last_change.elapsed() < HANG, "fuzz {name}: case {now} ran for over {HANG:?} (a hang)");
        }
        worker.join().expect("the fuzz loop itself does not panic");
        let n = cases.load(Ordering::Relaxed);
        let failures = failures.lock().unwrap();
        let (ok, secs) = (read.load(Ordering::Relaxed), started.elapsed().as_secs_f64());
        println!("fuzz {name}: {n} cases ({ok} read, the rest refused) in {secs:.1} s, {} failures", failures.len());
        assert!(failures.is_empty(), "fuzz {name}: {} failures:\n{}", failures.len(), failures.join("\n"));
    }

    /// One case: `f` must not panic, and an error must name the file (`file` prefix).
    fn case(&self, label: &str, file: &str, f: impl FnOnce() -> Result<(), String>) {
        self.cases.fetch_add(1, Ordering::Relaxed);
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!("case {} {label}", self.name); // names the case an abort (out of memory) kills
        }
        let outcome = catch_unwind(AssertUnwindSafe(f));
        let problem = match outcome {
            Ok(Ok(())) => {
                self.read.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Err(e)) if e.starts_with(file) && e.len() > file.len() + 2 => return,
            Ok(Err(e)) => format!("error does not name the file: {e}"),
            Err(p) => format!(
                "PANIC: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        };
        self.failures.lock().unwrap().push(format!("  {} {label}: {problem}", self.name));
    }
}

/// Seeds: `FUZZ_SEED` replays one, else 0, 1, 2, ... until the budget or the cap.
fn seeds(deadline: Instant, cap: u64) -> impl Iterator<Item = u64> {
    let one = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse::<u64>().ok());
    let range = match one {
        Some(s) => s..s + 1,
        None => 0..cap,
    };
    range.take_while(move |_| one.is_some() || Instant::now() < deadline)
}

fn read_both_ways(name: &str, bytes: Vec<u8>) -> Result<(), String> {
    let options = ReadOptions { extra_obs: Vec::new(), ..Default::default() };
    let mem = io::read_bytes(name, bytes.clone(), &options).map(|_| ()).map_err(|e| e.to_string());
    let paged = io::read_source(name, &FileSource::bytes(bytes), &options).map(|_| ()).map_err(|e| e.to_string());
    mem.and(paged)
}

fn hostile_names() -> Vec<String> {
    vec![
        "<script>alert('x')</script>".into(),
        "<img src=x onerror=alert(1)>&amp;\"'".into(),
        "tab\there\u{0}nul\u{7}bell\u{1b}[31mred".into(),
        "\u{202e}gnp.exe\u{feff}".into(),
        "x".repeat(1 << 20),
    ]
}

fn h5ad_with(obs: Vec<String>, var: Vec<String>, x: &CsrMatrix) -> Vec<u8> {
    let frame = |index: Vec<String>| Frame { index, columns: Vec::new() };
    let mut obs = frame(obs);
    obs.columns.push(("perturbation_name".into(), Column::Text(vec!["control".into(); x.n_rows])));
    let a = AnnData { x, layers: Vec::new(), obs, var: frame(var), uns: Vec::new(), compression: None };
    h5ad_write::write_h5ad(&a).expect("the writer writes what it is given")
}

#[test]
fn fuzz_h5ad_reader() {
    Fuzz::run("h5ad", Duration::from_secs(50), |fuzz, deadline| {
        // Hostile names: read as data, whatever they hold.
        let names = hostile_names();
        let mut x = CsrMatrix::new(names.len());
        for i in 0..names.len() {
            x.push_dense_row(&(0..names.len()).map(|j| (i + j) as f32).collect::<Vec<_>>());
        }
        let bytes = h5ad_with(names.clone(), names.clone(), &x);
        fuzz.case("hostile names", "names.h5ad", || {
            let d = io::read_bytes("names.h5ad", bytes, &ReadOptions::default()).map_err(|e| e.to_string())?;
            assert_eq!(d.cells, names);
            Ok(())
        });
        // Hostile shapes: sparse arrays that disagree with themselves or with obs/var.
        let two_cells = || vec!["c1".to_string(), "c2".to_string()];
        let two = two_cells();
        let genes = vec!["KLF1".to_string(), "GATA1".to_string(), "SET".to_string()];
        let m = |n_rows, indptr: Vec<u64>, indices: Vec<u32>| CsrMatrix {
            n_rows,
            n_cols: 3,
            data: vec![1.0; indices.len()],
            indptr,
            indices,
        };
        let shapes = [
            ("indices out of range", two.clone(), m(2, vec![0, 1, 2], vec![0, 999])),
            ("indptr decreasing", two.clone(), m(2, vec![0, 2, 1], vec![0, 1])),
            ("indptr past the data", two.clone(), m(2, vec![0, 1, 1 << 40], vec![0, 1])),
            ("indptr too short", two, m(2, vec![0], vec![])),
        ];
        let mut files: Vec<(&str, Vec<u8>)> =
            shapes.into_iter().map(|(label, obs, x)| (label, h5ad_with(obs, genes.clone(), &x))).collect();
        // Millions of declared rows in a tiny file: X's `shape` attribute [2, 3] patched to [5e6, 3].
        let mut big = h5ad_with(two_cells(), genes.clone(), &m(2, vec![0, 1, 2], vec![0, 1]));
        let shape = [2i64.to_le_bytes(), 3i64.to_le_bytes()].concat();
        let at = big.windows(16).position(|w| w == shape).expect("the shape attribute is stored as two i64");
        big[at..at + 8].copy_from_slice(&5_000_000i64.to_le_bytes());
        files.push(("millions of declared rows", big));
        for (label, bytes) in files {
            fuzz.case(label, "shape.h5ad", || match read_both_ways("shape.h5ad", bytes) {
                Ok(()) => Err(format!("{label}: read without error")),
                Err(e) => Err(e),
            });
        }
        // Seeded mutations of real files, every layout the readers know.
        let files = [
            "pertpy_csr_f32.h5ad",
            "csc_f64.h5ad",
            "dense_int.h5ad",
            "gears_norm_layers.h5ad",
            "norm_raw.h5ad",
            "gzip_chunked.h5ad",
            "anndata07_csr.h5ad",
            "anndata06_compound.h5ad",
            "anndata06_raw.h5ad",
            "cpa_norman_layout.h5ad",
        ];
        let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(fixture(f)).unwrap()).collect();
        for seed in seeds(deadline, 100_000) {
            let mut rng = Rng(seed);
            let k = rng.below(files.len());
            let bytes = mutate(&mut rng, &originals[k]);
            fuzz.case(&format!("seed {seed} ({})", files[k]), "m.h5ad", || read_both_ways("m.h5ad", bytes));
        }
    });
}

#[test]
fn fuzz_csv_reader() {
    Fuzz::run("csv", Duration::from_secs(20), |fuzz, deadline| {
        let read = |name: &str, bytes: Vec<u8>| {
            io::read_bytes(name, bytes, &ReadOptions::default()).map(|_| ()).map_err(|e| e.to_string())
        };
        for name in hostile_names() {
            let text = format!(",KLF1,{name}\n{name},1,2\nc2,0,3\n");
            fuzz.case("hostile name", "names.csv", || {
                let d = io::read_bytes("names.csv", text.into_bytes(), &ReadOptions::default())
                    .map_err(|e| e.to_string())?;
                assert_eq!(d.matrix.n_rows + d.matrix.n_cols, 4);
                Ok(())
            });
        }
        let shapes: [(&str, Vec<u8>); 6] = [
            ("empty", Vec::new()),
            ("header only", b",KLF1,GATA1\n".to_vec()),
            ("a million empty lines", [&b",KLF1\n"[..], &b"\n".repeat(1_000_000)].concat()),
            ("a 1 MB number", format!(",KLF1\nc1,{}\n", "9".repeat(1 << 20)).into_bytes()),
            ("gzip header, no body", vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]),
            ("not UTF-8", b",KLF1\nc1,\xff\xfe\n".to_vec()),
        ];
        for (label, bytes) in shapes {
            fuzz.case(label, "shape.csv", || read("shape.csv", bytes));
        }
        let files =
            ["cells_rows.csv", "bom_crlf.csv", "genes_rows.tsv.gz", "normalized_cells_rows.csv", "bad_ragged.csv"];
        let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(fixture(f)).unwrap()).collect();
        for seed in seeds(deadline, 200_000) {
            let mut rng = Rng(seed);
            let k = rng.below(files.len());
            let name = if files[k].ends_with(".gz") { "m.tsv.gz" } else { "m.csv" };
            let bytes = mutate(&mut rng, &originals[k]);
            fuzz.case(&format!("seed {seed} ({})", files[k]), name, || read(name, bytes));
        }
    });
}

#[test]
fn fuzz_model_card() {
    Fuzz::run("model card", Duration::from_secs(20), |fuzz, deadline| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
        let card = std::fs::read_to_string(dir.join("card.json")).unwrap();
        let weights = std::fs::read(dir.join("model.bpk")).unwrap();
        let device = Device::flex();
        // Errors from the card start with "model card", from the weights with "weights".
        let load = |text: &str| match Predictor::load(text, weights.clone(), &device) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("card.json: {e}")),
        };
        fuzz.case("the real card", "card.json", || load(&card));
        // Hostile numbers in the network's shape, and hostile names.
        let net_edits = [
            ("\"n_heads\": 4", "\"n_heads\": 0"),
            ("\"n_heads\": 4", "\"n_heads\": 3"),
            ("\"d_model\": 32", "\"d_model\": 0"),
            ("\"d_model\": 32", "\"d_model\": 1000000000"),
            ("\"n_freqs\": 6", "\"n_freqs\": 4000000000"),
            ("\"n_freqs\": 6", "\"n_freqs\": 0"),
        ];
        for (from, to) in net_edits {
            let text = card.replacen(from, to, 1);
            fuzz.case(to, "card.json", || load(&text));
        }
        for name in hostile_names() {
            let text = card.replacen("\"TP73\"", &serde_json::to_string(&name).unwrap(), 1);
            fuzz.case("hostile symbol", "card.json", || load(&text));
        }
        for seed in seeds(deadline, 20_000) {
            let mut rng = Rng(seed);
            let bytes = mutate(&mut rng, card.as_bytes());
            let text = String::from_utf8_lossy(&bytes).into_owned();
            fuzz.case(&format!("seed {seed}"), "card.json", || load(&text));
        }
    });
}
