//! `gemlet bundle`: one file holding the program and a model, to copy to a device.

use super::CliError;
use crate::gguf::bundle;
use crate::model::Model;
use std::fs::File;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BundleArgs {
    /// The model to put inside.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// The file to write (an executable).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(args: &BundleArgs) -> Result<(), CliError> {
    // Only a model gemlet can run goes in.
    Model::check(&args.model, Default::default())?;
    let exe = std::env::current_exe().map_err(CliError::Input)?;
    let io = |what: &str, path: &std::path::Path, e: std::io::Error| {
        CliError::Usage(format!("{what} {}: {e}", path.display()))
    };
    let mut program = File::open(&exe).map_err(|e| io("reading", &exe, e))?;
    let mut model = File::open(&args.model).map_err(|e| io("reading", &args.model, e))?;
    let tmp = args.output.with_extension("partial");
    let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(|e| io("writing", &tmp, e))?);
    let e = bundle::write(&mut program, &mut model, &mut out)
        .and_then(|e| out.into_inner().map_err(|e| e.into_error()).map(|f| (e, f)))
        .and_then(|(e, f)| f.sync_all().map(|_| e))
        .map_err(|e| io("writing", &tmp, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("writing", &tmp, e))?;
    }
    std::fs::rename(&tmp, &args.output).map_err(|e| io("writing", &args.output, e))?;
    eprintln!(
        "wrote {}: this program, then {} ({} bytes, at offset {}); run it without -m to use the model inside",
        args.output.display(),
        args.model.display(),
        e.len,
        e.offset
    );
    Ok(())
}
