//! Data parallelism over indices: on the native platforms over the cores (rayon), in the browser
//! (one thread per worker) a plain loop. Results come back in index order either way, so output
//! never depends on the thread count.

#[cfg(not(target_arch = "wasm32"))]
pub fn map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    use rayon::prelude::*;
    (0..n).into_par_iter().map(f).collect()
}

#[cfg(target_arch = "wasm32")]
pub fn map<T>(n: usize, f: impl Fn(usize) -> T) -> Vec<T> {
    (0..n).map(f).collect()
}

/// Threads `map` spreads over (1 in the browser).
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    1
}

/// `f` over consecutive chunks of `items` (about a million elements each), in order.
pub fn map_chunks<I: Sync, T: Send>(items: &[I], f: impl Fn(&[I]) -> T + Sync + Send) -> Vec<T> {
    const CHUNK: usize = 1 << 20;
    map(items.len().div_ceil(CHUNK), |c| f(&items[c * CHUNK..((c + 1) * CHUNK).min(items.len())]))
}
