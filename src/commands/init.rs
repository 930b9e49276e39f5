use crate::error;
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map};

const STARTER: &str = include_str!("../../examples/starter/bgd.yaml");

pub fn run(force: bool, out: &Output) -> Result<()> {
    let path = std::path::Path::new("bgd.yaml");
    if path.exists() && !force {
        return Err(error::refused(
            "bgd.yaml already exists here; use --force to overwrite it",
        ));
    }
    std::fs::write(path, STARTER)
        .map_err(|e| error::environment(format!("cannot write bgd.yaml: {e}")))?;
    out.print("wrote bgd.yaml: edit app, container.port and lb, then run `bgd validate`");
    let mut f = Map::new();
    f.insert("path".into(), json!("bgd.yaml"));
    out.result(true, 0, f);
    Ok(())
}
