//! Opening the GPU through wgpu (WebGPU in the browser, Vulkan/Metal/DX12 natively) and reporting
//! what the adapter offers.

use burn::prelude::*;
use burn::tensor::wgpu::wgpu;
use serde::Serialize;

/// What the page and the benchmarks show about the GPU.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub shader_f16: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
}

impl GpuInfo {
    fn from_adapter(adapter: &wgpu::Adapter, backend: wgpu::Backend) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        Self {
            adapter: info.name,
            backend: format!("{backend:?}"),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
        }
    }

    /// The largest buffer one tensor may take on this GPU (see `StableDiffusion::buffer_limit`).
    pub fn buffer_limit(&self) -> u64 {
        self.max_storage_buffer_binding_size.min(self.max_buffer_size)
    }
}

/// Opens the default GPU (on wasm, the page's WebGPU adapter).
pub async fn open_gpu() -> Result<(Device, GpuInfo), String> {
    let (device, info, _) = open_gpu_raw().await?;
    Ok((device, info))
}

/// [`open_gpu`], also returning wgpu's handle of the device (to watch or destroy it).
pub async fn open_gpu_raw() -> Result<(Device, GpuInfo, wgpu::Device), String> {
    #[cfg(target_arch = "wasm32")]
    let options = Device::wgpu_options().graphics_api(burn::tensor::wgpu::WgpuBackend::WebGpu);
    #[cfg(not(target_arch = "wasm32"))]
    let options = Device::wgpu_options();
    let (device, setup) = options.init_with_setup_async().await.map_err(|e| format!("could not open the GPU: {e}"))?;
    let info = GpuInfo::from_adapter(&setup.adapter, setup.backend);
    Ok((device, info, setup.device))
}
