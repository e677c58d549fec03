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

    /// Opens the device once, so a missing GPU is a clear error up front rather than a panic
    /// deep inside the backend.
    pub fn check(self) -> Result<(), crate::error::CliError> {
        match self {
            Compute::Cpu => Ok(()),
            #[cfg(feature = "gpu")]
            Compute::Gpu => {
                let quiet = std::panic::take_hook();
                std::panic::set_hook(Box::new(|_| {}));
                let opened = std::panic::catch_unwind(|| {
                    let zero = burn::tensor::Tensor::<1>::zeros([1], &self.device());
                    zero.into_data().try_to_vec::<f32>().is_ok()
                });
                std::panic::set_hook(quiet);
                match opened {
                    Ok(true) => Ok(()),
                    _ => Err(crate::error::CliError::Flag {
                        flag: "device",
                        problem: "no GPU could be opened through Vulkan (a Vulkan driver and loader must be installed); use --device cpu".into(),
                    }),
                }
            }
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
