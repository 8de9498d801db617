//! Download sizes of the real models under each storage choice, computed from their architectures'
//! tensor shapes (random weights: nothing is downloaded), as `websd sizes` prints them.

use std::collections::BTreeMap;

use burn::prelude::*;

use crate::error::Result;
use crate::model::clip::{ClipConfig, ClipTextModel};
use crate::model::config::{UNetConfig, VaeConfig};
use crate::model::unet::UNet2DConditionModel;
use crate::model::vae::AutoencoderKL;
use crate::weights::convert::{self, ConvertOptions, Quant, VaeStorage};
use crate::weights::{RandomSource, TensorSource, WeightLoader};

/// (component, tensor name, shape) of every tensor text-to-image downloads: the text encoder
/// (and SDXL's second, `text_2`), the UNet and the VAE decoder (the VAE encoder is only needed for
/// img2img). The networks are built from random weights in f16 (SDXL's UNet alone is 5 GB so).
pub fn text_to_image_shapes(text: &ClipConfig, text_2: Option<&ClipConfig>, unet: &UNetConfig, vae: &VaeConfig) -> Result<Vec<(&'static str, String, Vec<usize>)>> {
    let device = Device::flex();
    let mut shapes = Vec::new();
    let mut record = |component: &'static str, src: &RandomSource| {
        for n in src.names() {
            let decoder_only = component != "vae" || !(n.starts_with("encoder.") || n.starts_with("quant_conv."));
            if decoder_only {
                shapes.push((component, n.clone(), src.shape(&n).unwrap_or_default()));
            }
        }
    };
    let mut src = RandomSource::new();
    let f16 = burn::tensor::FloatDType::F16;
    ClipTextModel::load(text, &mut WeightLoader::new(&mut src, &device).with_dtype(f16))?;
    record("text_encoder", &src);
    if let Some(text_2) = text_2 {
        let mut src = RandomSource::new();
        ClipTextModel::load(text_2, &mut WeightLoader::new(&mut src, &device).with_dtype(f16))?;
        record("text_encoder_2", &src);
    }
    let mut src = RandomSource::new();
    AutoencoderKL::load(vae, &mut WeightLoader::new(&mut src, &device).with_dtype(f16))?;
    record("vae", &src);
    let mut src = RandomSource::new();
    UNet2DConditionModel::load(unet, &mut WeightLoader::new(&mut src, &device).with_dtype(f16))?;
    record("unet", &src);
    Ok(shapes)
}

/// The storage choices users pick between.
pub fn settings() -> Vec<(&'static str, ConvertOptions)> {
    let with = |quant, text_encoder_quant, q4_min, vae| ConvertOptions { quant, text_encoder_quant, q4_min, vae, ..Default::default() };
    vec![
        ("f16", with(Quant::F16, None, false, VaeStorage::F16)),
        ("q8", with(Quant::Q8, None, false, VaeStorage::F16)),
        ("q4 (text encoder q8)", with(Quant::Q4, Some(Quant::Q8), false, VaeStorage::F16)),
        ("q4", with(Quant::Q4, None, false, VaeStorage::F16)),
        ("q4 + min", with(Quant::Q4, None, true, VaeStorage::F16)),
        ("q4, VAE q8", with(Quant::Q4, None, false, VaeStorage::Q8)),
    ]
}

/// Bytes per component for one storage choice.
pub fn download_bytes(shapes: &[(&'static str, String, Vec<usize>)], opts: &ConvertOptions) -> BTreeMap<&'static str, u64> {
    let mut per = BTreeMap::new();
    for (component, name, shape) in shapes {
        let dtype = convert::storage_for(component, name, shape, opts);
        *per.entry(*component).or_default() += convert::stored_size(dtype, shape, opts.q4_min);
    }
    per
}
