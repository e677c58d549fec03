//! Where training runs: the CPU (Burn's flex backend, the default) or, in a build with the `cuda`
//! feature, an NVIDIA GPU through Burn's CUDA backend. Inference in the page and in `predict`
//! stays on the CPU or WebGPU; this choice is for training and benchmarks.

use burn::tensor::Device;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compute {
    /// Burn's flex CPU backend; a batch's rows are split over the threads (RAYON_NUM_THREADS).
    #[default]
    Cpu,
    /// The first CUDA GPU (a build with `--features cuda`).
    #[cfg(feature = "cuda")]
    Cuda,
}

impl Compute {
    pub fn device(self) -> Device {
        match self {
            Compute::Cpu => Device::flex(),
            #[cfg(feature = "cuda")]
            Compute::Cuda => Device::cuda(0),
        }
    }

    /// Threads that share a training batch: one per core on the CPU; on a GPU the batch is one
    /// launch of large kernels, not shards.
    pub fn shards(self) -> usize {
        match self {
            Compute::Cpu => rayon::current_num_threads(),
            #[cfg(feature = "cuda")]
            Compute::Cuda => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compute::Cpu => "burn flex (CPU)",
            #[cfg(feature = "cuda")]
            Compute::Cuda => "burn cuda (GPU)",
        }
    }
}
