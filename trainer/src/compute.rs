//! Where training runs: the CPU (Burn's flex backend, the default) or, in a build with the `gpu`
//! feature, a GPU through Burn's wgpu backend on Vulkan (SPIR-V kernels; NVIDIA, AMD or Intel).
//! Burn's CUDA backend is not offered: its build downloads an LLVM bundle, which a registry-only
//! machine (this project's CI) cannot fetch. Inference in the page and in `predict` stays on the
//! CPU or WebGPU; this choice is for training and benchmarks.

use burn::tensor::Device;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compute {
    /// Burn's flex CPU backend; a batch's rows are split over the threads (RAYON_NUM_THREADS).
    #[default]
    Cpu,
    /// The default Vulkan GPU (a build with `--features gpu`).
    #[cfg(feature = "gpu")]
    Gpu,
}

impl Compute {
    pub fn device(self) -> Device {
        match self {
            Compute::Cpu => Device::flex(),
            #[cfg(feature = "gpu")]
            Compute::Gpu => Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
        }
    }

    /// Threads that share a training batch: one per core on the CPU; on a GPU the batch is one
    /// launch of large kernels, not shards.
    pub fn shards(self) -> usize {
        match self {
            Compute::Cpu => rayon::current_num_threads(),
            #[cfg(feature = "gpu")]
            Compute::Gpu => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compute::Cpu => "burn flex (CPU)",
            #[cfg(feature = "gpu")]
            Compute::Gpu => "burn wgpu (Vulkan GPU)",
        }
    }
}
