//! Resumable checkpoints: one safetensors file with the parameters, the Adam moments
//! and (in the header metadata) the step, RNG and quantization ranges. Written to a
//! temporary file and renamed, so an interrupted write leaves the previous checkpoint.

use crate::data::Rng;
use crate::model::{Arch, Param, Params};
use crate::{State, TrainError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `st` to `path` atomically.
pub fn save(path: &Path, st: &State) -> Result<(), TrainError> {
    let err = |e: String| TrainError::Checkpoint(format!("{}: {e}", path.display()));
    let mut owned = Vec::new();
    for (k, p) in st.params.params.iter().enumerate() {
        owned.push((format!("param.{}", p.name), p.shape.clone(), bytes(&p.data)));
        owned.push((
            format!("adam_m.{}", p.name),
            p.shape.clone(),
            bytes(&st.m[k]),
        ));
        owned.push((
            format!("adam_v.{}", p.name),
            p.shape.clone(),
            bytes(&st.v[k]),
        ));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| err(e.to_string()))?,
            ))
        })
        .collect::<Result<_, TrainError>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "irnn-train-checkpoint".to_string());
    meta.insert(
        "arch".to_string(),
        serde_json::to_string(&st.params.arch).unwrap(),
    );
    meta.insert("step".to_string(), st.step.to_string());
    meta.insert("rng".to_string(), st.rng.0.to_string());
    meta.insert(
        "quant".to_string(),
        serde_json::to_string(&st.quant).unwrap(),
    );
    let data = safetensors::serialize(views, &Some(meta)).map_err(|e| err(e.to_string()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
        f.write_all(&data).map_err(|e| err(e.to_string()))?;
        f.sync_all().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// Reads a checkpoint; its architecture must equal `arch`.
pub fn load(path: &Path, arch: &Arch) -> Result<State, TrainError> {
    let err = |e: String| TrainError::Checkpoint(format!("{}: {e}", path.display()));
    let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&data).map_err(|e| err(e.to_string()))?;
    let meta = header
        .metadata()
        .clone()
        .ok_or_else(|| err("no metadata".into()))?;
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| err(format!("no \"{k}\" in metadata")))
    };
    if get("format")? != "irnn-train-checkpoint" {
        return Err(err("not an irnn-train checkpoint".into()));
    }
    let ck_arch: Arch = serde_json::from_str(&get("arch")?).map_err(|e| err(e.to_string()))?;
    // A checkpoint without `cells` (written before GRU and RNN layers) is all LSTM.
    if ck_arch.normalized() != arch.normalized() {
        return Err(err(format!(
            "architecture differs from the spec: {ck_arch:?} vs {arch:?}"
        )));
    }
    let st = SafeTensors::deserialize(&data).map_err(|e| err(e.to_string()))?;
    let read = |name: &str| -> Result<(Vec<usize>, Vec<f32>), TrainError> {
        let t = st.tensor(name).map_err(|e| err(format!("{name}: {e}")))?;
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((t.shape().to_vec(), v))
    };
    let names: Vec<String> = crate::model::Params::init(arch, 0)
        .params
        .into_iter()
        .map(|p| p.name)
        .collect();
    let (mut params, mut m, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for n in names {
        let (shape, data) = read(&format!("param.{n}"))?;
        m.push(read(&format!("adam_m.{n}"))?.1);
        v.push(read(&format!("adam_v.{n}"))?.1);
        params.push(Param {
            name: n,
            shape,
            data,
        });
    }
    Ok(State {
        params: Params {
            arch: arch.clone(),
            params,
        },
        m,
        v,
        step: get("step")?.parse().map_err(|_| err("bad step".into()))?,
        rng: Rng(get("rng")?.parse().map_err(|_| err("bad rng".into()))?),
        quant: serde_json::from_str(&get("quant")?).map_err(|e| err(e.to_string()))?,
    })
}
