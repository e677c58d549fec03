//! Browser bindings, a thin face: each method converts JS values, makes one call into `Analysis` (the
//! CLI's pipeline) and converts the result back. Runs in a Web Worker, where a dropped `File` is read
//! in slices, never copied whole. Backends: Burn's CPU backend in wasm, and WebGPU (initialised once).

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::analysis::{Analysis, CellJob, HeldGroups, Helper, ScoredChunk};
use crate::io::source::{FormatError, Source};
use crate::io::{FileSource, ReadOptions, SharedSource};
use crate::model_folder::{CARD_FILE, ModelFiles, WEIGHTS_FILE};
use crate::predict::Backend;

unsafe extern "C" {
    fn __wasm_call_ctors(); // synthesised by wasm-ld: the static constructors (`inventory`, GPU stack)
}

/// Runs static constructors once; else wasm-ld wraps *every* export with them (5x slower, measured).
#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
    unsafe { __wasm_call_ctors() }
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(js_err)
}

/// For jobs between workers: raw byte fields become one `Uint8Array` each (the JSON-compatible
/// form makes a JS array of numbers, which the receiving side then decodes number by number).
fn to_js_bytes<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible().serialize_bytes_as_arrays(false)).map_err(js_err)
}

/// A `File` read slice by slice with `FileReaderSync` (Web Workers only).
struct BrowserFile(web_sys::File, web_sys::FileReaderSync);

// wasm32 without shared memory has one thread: these JS handles never cross threads.
unsafe impl Send for BrowserFile {}
unsafe impl Sync for BrowserFile {}

impl Source for BrowserFile {
    fn len(&self) -> u64 {
        self.0.size() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        let fail = |e: JsValue| FormatError::Source(format!("the browser could not read the file: {e:?}"));
        let blob = self.0.slice_with_f64_and_f64(offset as f64, (offset + buf.len() as u64) as f64).map_err(fail)?;
        let bytes = js_sys::Uint8Array::new(&self.1.read_as_array_buffer(&blob).map_err(fail)?.into());
        release();
        if bytes.length() as usize != buf.len() {
            return Err(FormatError::UnexpectedEof { expected: buf.len(), available: bytes.length() as usize });
        }
        bytes.copy_to(buf);
        Ok(())
    }
}

/// Lets the engine collect the reads' bytes as they go. `FileReaderSync` hands back buffers the
/// engine did not allocate itself, and while the open runs (one long WebAssembly call) a collection
/// advances only as JS allocates. So each read allocates a little: a buffer the engine's own way
/// (which checks the young generation's buffer bytes) and 64 KB of heap (which drives scavenges
/// and marking). Measured, the 1.72 GB h5ad: the tab peaked at 915-1,082 MiB while opening
/// without the heap part (hundreds of MB of read slices waiting), 818 MiB over the whole run with it.
fn release() {
    let _ = js_sys::ArrayBuffer::new(8);
    let _ = js_sys::Array::new_with_length(8192);
}

/// The page's session: one `Analysis` (model + open file) and the compute device.
#[wasm_bindgen]
pub struct Session {
    analysis: Option<Analysis>,
    device: Device,
    gpu: Option<Device>,
    /// A helper's state between jobs (the open file's context, the group sums it holds).
    helper: Helper,
}

#[wasm_bindgen]
#[allow(clippy::new_without_default)] // constructed from JS only
impl Session {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Session {
        Session { analysis: None, device: Device::flex(), gpu: None, helper: Helper::default() }
    }

    pub fn model_files() -> Vec<String> {
        vec![CARD_FILE.into(), WEIGHTS_FILE.into()] // a model folder's [card, weights] file names
    }

    /// "cpu" (WebAssembly) or "webgpu"; a failure says why and leaves the current backend.
    pub async fn use_backend(&mut self, name: &str) -> Result<(), JsError> {
        self.device = match name.parse().map_err(js_err)? {
            Backend::Cpu => Device::flex(),
            Backend::WebGpu => match &self.gpu {
                Some(gpu) => gpu.clone(),
                None => {
                    let gpu = Device::wgpu_options().init_async().await;
                    let gpu = gpu.map_err(|e| js_err(format!("WebGPU could not start ({e}); staying on the CPU")))?;
                    self.gpu.insert(gpu).clone()
                }
            },
        };
        self.analysis.as_mut().map_or(Ok(()), |a| a.set_device(&self.device)).map_err(js_err)
    }

    /// Loads a model (an open file is matched to it again); returns its overview.
    pub fn load_model(&mut self, card_json: String, weights: Vec<u8>) -> Result<JsValue, JsError> {
        let files = ModelFiles { card_json, weights };
        let analysis = Analysis::load_into(&mut self.analysis, files, &self.device).map_err(js_err)?;
        to_js(&analysis.predictor().card.overview())
    }

    fn analysis(&self) -> Result<&Analysis, JsError> {
        self.analysis.as_ref().ok_or_else(|| js_err("load a model first"))
    }
    fn analysis_mut(&mut self) -> Result<&mut Analysis, JsError> {
        self.analysis.as_mut().ok_or_else(|| js_err("load a model first"))
    }

    /// Opens a file (h5ad, CSV, TSV, .gz); returns its input report.
    pub fn open_file(&mut self, file: web_sys::File, orientation: Option<String>) -> Result<JsValue, JsError> {
        let options =
            ReadOptions { orientation: orientation.unwrap_or_default().parse().map_err(js_err)?, ..Default::default() };
        let (name, reader) = (file.name(), web_sys::FileReaderSync::new().map_err(|e| js_err(format!("{e:?}")))?);
        let source = FileSource::RandomAccess(SharedSource::cached(BrowserFile(file, reader)));
        to_js(self.analysis_mut()?.open(&name, source, &options).map_err(js_err)?)
    }

    /// The open file's input report (matched to the current model); null with no file open.
    pub fn report(&self) -> Result<JsValue, JsError> {
        to_js(&self.analysis()?.report().ok())
    }

    /// What genes are measured against: the cells labelled `control`, each batch of `batch_column`
    /// against its own cells (empty: all cells); returns the input report, matched again.
    pub fn set_reference(&mut self, control: Option<String>, batch_column: Option<String>) -> Result<JsValue, JsError> {
        to_js(self.analysis_mut()?.set_reference(control.as_deref(), batch_column.as_deref()).map_err(js_err)?)
    }

    pub fn set_group_column(&mut self, column: Option<String>) -> Result<(), JsError> {
        self.analysis_mut()?.set_group_column(column.as_deref()).map_err(js_err)
    }

    /// Predicts cells [start, start + count), keeping `top` answers each; the page reads them back
    /// through the `cells` view, so none are sent now. Returns the number predicted.
    pub async fn predict_cells(&mut self, start: usize, count: usize, top: usize) -> Result<usize, JsError> {
        Ok(self.analysis_mut()?.predict_cells_async(start, count, top).await.map_err(js_err)?.len())
    }

    // ---- shared work: the open file makes jobs, helpers (other workers' sessions) run them ----

    /// What helpers need of the open file besides each job (`JobContext`).
    pub fn job_context(&self) -> Result<JsValue, JsError> {
        to_js(&self.analysis()?.job_context().map_err(js_err)?)
    }

    /// A helper's: the context of the jobs it will be given.
    pub fn set_job_context(&mut self, context: JsValue) -> Result<(), JsError> {
        self.helper.set_context(serde_wasm_bindgen::from_value(context)?);
        Ok(())
    }

    /// Cells [start, start + count) of the open file as a job (`CellJob`).
    /// `hold_groups`: the helper keeps the group sums until `take_groups`.
    pub fn cell_job(&self, start: usize, count: usize, top: usize, hold_groups: bool) -> Result<JsValue, JsError> {
        to_js_bytes(&self.analysis()?.cell_job(start, count, top, hold_groups).map_err(js_err)?)
    }

    /// A helper's: runs a job under the context it was given; returns the `ScoredChunk`.
    pub async fn run_job(&mut self, job: JsValue) -> Result<JsValue, JsError> {
        let job: CellJob = serde_wasm_bindgen::from_value(job)?;
        let analysis = self.analysis.as_ref().ok_or_else(|| js_err("load a model first"))?;
        to_js_bytes(&self.helper.run(analysis, &job).await.map_err(js_err)?)
    }

    /// A helper's: the group sums it held (`HeldGroups`), handed over once.
    pub fn take_groups(&mut self) -> Result<JsValue, JsError> {
        to_js_bytes(&self.helper.take_groups())
    }

    /// Takes a helper's held group sums into the pseudobulks.
    pub fn accept_groups(&mut self, held: JsValue) -> Result<(), JsError> {
        let held: HeldGroups = serde_wasm_bindgen::from_value(held)?;
        self.analysis_mut()?.accept_groups(held).map_err(js_err)
    }

    /// Takes a helper's results back; returns the number of cells taken (as `predict_cells`).
    pub fn accept(&mut self, chunk: JsValue) -> Result<usize, JsError> {
        let chunk: ScoredChunk = serde_wasm_bindgen::from_value(chunk)?;
        Ok(self.analysis_mut()?.accept(chunk).map_err(js_err)?.len())
    }

    pub async fn pseudobulk(&mut self, top: usize) -> Result<JsValue, JsError> {
        to_js(&self.analysis_mut()?.pseudobulk_async(top).await.map_err(js_err)?)
    }

    /// A view (`ViewRequest`: attention, cell-accuracy, confusion, label-check, why, cells); its CSV when `csv`.
    pub async fn view(&self, request: JsValue, csv: bool) -> Result<JsValue, JsError> {
        let view = self.analysis()?.view_async(&serde_wasm_bindgen::from_value(request)?).await.map_err(js_err)?;
        if csv { Ok(view.to_csv().into()) } else { to_js(&view) }
    }

    /// Everything predicted so far, as `predict --format json|csv` writes it.
    pub fn export(&self, format: &str, cell_top: usize, group_top: usize) -> Result<String, JsError> {
        self.analysis()?.export(format.parse().map_err(js_err)?, cell_top, group_top).map_err(js_err)
    }
}
