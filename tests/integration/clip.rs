//! CLIPTextModel against transformers on the fixtures: SD 1.x style (quick_gelu, f16 on disk,
//! names without prefix, legacy pooling) and SD 2.x style (gelu, `text_model.` prefix, pooling at
//! the first eos_token_id).

use burn::prelude::*;
use websd::error::Error;
use websd::model::clip::{ClipConfig, ClipTextModel};
use websd::weights::{RandomSource, SafetensorsSource, TensorSource, WeightLoader};

use crate::common::{assert_close, fixtures, parity};

/// `chunk_rows`: load the token embedding in chunks of that many rows (several chunks).
fn check(folder: &str, chunk_rows: Option<usize>) {
    let device = Device::flex();
    let dir = fixtures().join(folder).join("text_encoder");
    let model = match chunk_rows {
        None => ClipTextModel::from_dir(&dir, &device).expect("load text encoder"),
        Some(rows) => {
            let config = ClipConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
            assert!(config.vocab_size > 3 * rows, "the test needs several chunks");
            let mut source = SafetensorsSource::from_dir(&dir).unwrap();
            ClipTextModel::load_with_embedding_chunk_rows(&config, &mut WeightLoader::new(&mut source, &device), rows).unwrap()
        }
    };
    let reference = parity(&format!("{folder}/text_encoder"));
    for case in 0..2 {
        let (ids, shape) = reference.read_i64(&format!("case{case}.input_ids")).unwrap();
        let rows: Vec<Vec<i64>> = ids.chunks(shape[1]).map(<[i64]>::to_vec).collect();
        let last = model.forward(&rows, 1).unwrap();
        let what = format!("{folder} text_encoder case{case}");
        assert_close(&format!("{what} last"), last.hidden, &reference, &format!("case{case}.last_hidden_state"), 1e-4);
        assert_close(&format!("{what} pooled"), last.pooled, &reference, &format!("case{case}.pooled"), 1e-4);
        let penultimate = model.forward(&rows, 2).unwrap();
        assert_close(&format!("{what} penultimate"), penultimate.hidden, &reference, &format!("case{case}.penultimate_hidden_state"), 1e-4);
    }
}

#[test]
fn sd1_text_encoder_matches_transformers() {
    check("sd1", None);
}

/// The token embedding split into many row chunks gives the same outputs.
#[test]
fn sd1_text_encoder_chunked_embedding_matches_transformers() {
    check("sd1", Some(7));
}

#[test]
fn sd2_text_encoder_matches_transformers() {
    check("sd2", None);
}

#[test]
fn sd2_text_encoder_chunked_embedding_matches_transformers() {
    check("sd2", Some(5));
}

/// A source that hides, renames or reshapes one tensor of the fixture.
struct Broken {
    inner: SafetensorsSource,
    hide: &'static str,
    rename_to: Option<&'static str>,
    reshape: bool,
}

impl TensorSource for Broken {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        if Some(name) == self.rename_to {
            return self.inner.shape(self.hide);
        }
        if name == self.hide {
            return if self.reshape {
                self.inner.shape(name).map(|mut s| {
                    s[0] += 1;
                    s
                })
            } else {
                None
            };
        }
        self.inner.shape(name)
    }
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.names().into_iter().filter(|n| n != self.hide || self.reshape).collect();
        names.extend(self.rename_to.map(String::from));
        names
    }
    fn load(&mut self, name: &str, shape: &[usize], device: &Device) -> websd::Result<Tensor<1>> {
        self.inner.load(name, shape, device)
    }
}

#[test]
fn broken_weights_give_named_errors() {
    let dir = fixtures().join("sd1/text_encoder");
    let config = ClipConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = Device::flex();
    let name = "encoder.layers.1.mlp.fc1.weight";
    let load = |rename_to, reshape| {
        let mut source = Broken { inner: SafetensorsSource::from_dir(&dir).unwrap(), hide: name, rename_to, reshape };
        ClipTextModel::load(&config, &mut WeightLoader::new(&mut source, &device)).map(|_| ())
    };
    assert!(matches!(load(None, false), Err(Error::MissingTensor(n)) if n == name));
    assert!(matches!(load(Some("encoder.layers.1.mlp.fc1.weight_renamed"), false), Err(Error::MissingTensor(n)) if n == name));
    match load(None, true) {
        Err(Error::ShapeMismatch { name: n, expected, found }) => {
            assert_eq!(n, name);
            assert_eq!(expected, vec![config.intermediate_size, config.hidden_size]);
            assert_eq!(found, vec![config.intermediate_size + 1, config.hidden_size]);
        }
        other => panic!("expected a shape error, got {:?}", other.err()),
    }
    // An extra tensor the config does not explain is reported too.
    struct Extra(SafetensorsSource);
    impl TensorSource for Extra {
        fn shape(&self, name: &str) -> Option<Vec<usize>> {
            if name == "encoder.layers.9.mlp.fc1.weight" { Some(vec![2, 2]) } else { self.0.shape(name) }
        }
        fn names(&self) -> Vec<String> {
            let mut n = self.0.names();
            n.push("encoder.layers.9.mlp.fc1.weight".into());
            n
        }
        fn load(&mut self, name: &str, shape: &[usize], device: &Device) -> websd::Result<Tensor<1>> {
            self.0.load(name, shape, device)
        }
    }
    let mut extra = Extra(SafetensorsSource::from_dir(&dir).unwrap());
    let err = ClipTextModel::load(&config, &mut WeightLoader::new(&mut extra, &device)).err();
    assert!(matches!(err, Some(Error::UnexpectedTensors(v)) if v == vec!["encoder.layers.9.mlp.fc1.weight".to_string()]));
}

/// The real SD 1.x text tower builds and runs with random weights.
#[test]
fn sd1_full_size_text_encoder_runs() {
    let device = Device::flex();
    let mut source = RandomSource::new();
    let model = ClipTextModel::load(&ClipConfig::sd1(), &mut WeightLoader::new(&mut source, &device)).unwrap();
    assert_eq!(source.parameter_count(), 123_060_480, "CLIP ViT-L/14 text tower parameter count");
    let mut ids = vec![49406, 320, 1125, 539, 320, 2368, 49407];
    ids.resize(77, 49407);
    let out = model.forward(&[ids], 1).unwrap();
    assert_eq!(out.hidden.dims(), [1, 77, 768]);
    assert!(crate::common::values(out.hidden).iter().all(|v| v.is_finite()));
}

/// SD 2.x's checkpoint carries the `text_model.` prefix: errors name the stored tensor.
#[test]
fn prefixed_weights_report_the_stored_name() {
    let dir = fixtures().join("sd2/text_encoder");
    let config = ClipConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = Device::flex();
    let stored = "text_model.final_layer_norm.bias";
    let mut source = Broken { inner: SafetensorsSource::from_dir(&dir).unwrap(), hide: stored, rename_to: None, reshape: true };
    match ClipTextModel::load(&config, &mut WeightLoader::new(&mut source, &device)) {
        Err(Error::ShapeMismatch { name, expected, found }) => {
            assert_eq!(name, stored);
            assert_eq!((expected, found), (vec![config.hidden_size], vec![config.hidden_size + 1]));
        }
        other => panic!("expected a shape error, got {:?}", other.err()),
    }
}

/// The SD 2.x / SD-Turbo text tower (OpenCLIP ViT-H, 23 layers, gelu) builds and runs, with clip
/// skip 2 as SD 2.x uses it.
#[test]
fn sd2_full_size_text_encoder_runs() {
    let device = Device::flex();
    let mut source = RandomSource::new();
    let model = ClipTextModel::load(&ClipConfig::sd2(), &mut WeightLoader::new(&mut source, &device)).unwrap();
    assert_eq!(source.parameter_count(), 340_387_840, "OpenCLIP ViT-H text tower (23 layers) parameter count");
    assert_eq!(model.layer_count(), 23);
    let ids = vec![49406, 320, 1125, 539, 49407, 0, 0, 0];
    let out = model.forward(&[ids], 2).unwrap();
    assert_eq!(out.hidden.dims(), [1, 8, 1024]);
    assert_eq!(out.pooled.dims(), [1, 1024]);
    assert!(crate::common::values(out.hidden).iter().all(|v| v.is_finite()));
}
