//! `dpf init [DIR]`: starts a products repository: the weather product with its recorded responses
//! and tests, the JSON Schema, an editor setting that maps product files to it (so completion works
//! without a relative `$schema` comment), and the CI workflow.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Exit, print};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The repository's folder, made if missing [default: the current folder].
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// What `dpf init` writes: path in the repository, contents.
const FILES: [(&str, &str); 7] = [
    (
        "products/weather_data_product.yaml",
        include_str!("../../products/weather_data_product.yaml"),
    ),
    (
        "products/fixtures/weather_data_product/extract_weather.json",
        include_str!("../../products/fixtures/weather_data_product/extract_weather.json"),
    ),
    (
        "products/fixtures/weather_data_product_heatwave/extract_weather.json",
        include_str!("../../products/fixtures/weather_data_product_heatwave/extract_weather.json"),
    ),
    (
        "products/fixtures/weather_data_product_sensor_glitch/extract_weather.json",
        include_str!("../../products/fixtures/weather_data_product_sensor_glitch/extract_weather.json"),
    ),
    ("schemas/data_product.schema.json", crate::validate::schema::SCHEMA),
    (".vscode/settings.json", VSCODE_SETTINGS),
    (
        ".github/workflows/products.yml",
        include_str!("../../examples/validate-products.github-workflow.yml"),
    ),
];

/// The YAML extension (Red Hat's, on the YAML language server) checks and completes product files
/// against the schema.
const VSCODE_SETTINGS: &str = r#"{
  "yaml.schemas": {
    "./schemas/data_product.schema.json": ["products/*.yaml", "products/*.yml"]
  }
}
"#;

pub(super) fn run(args: Args) -> anyhow::Result<Exit> {
    // Nothing is overwritten: a file already there stops the whole init before anything is written.
    let taken: Vec<String> = FILES
        .iter()
        .map(|(path, _)| args.dir.join(path))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !taken.is_empty() {
        anyhow::bail!(
            "dpf init writes nothing over existing files, and these exist: {}",
            taken.join(", ")
        );
    }
    for (path, text) in FILES {
        let path = args.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot make {}", parent.display()))?;
        }
        crate::atomic::write(&path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let dir = args.dir.display();
    print(&format!(
        "a products repository in {dir}: {} files\n\nnext:\n  cd {dir}\n  dpf validate products/\n  dpf test products/\n  \
         dpf run weather_data_product --replay\n",
        FILES.len()
    ))?;
    Ok(Exit::Success)
}
