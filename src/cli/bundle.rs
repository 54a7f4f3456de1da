//! `gemlet bundle`: one file holding the program and a model, to copy to a device.

use super::CliError;
use crate::gguf::bundle;
use crate::model::Model;
use std::fs::File;
use std::path::{Path, PathBuf};

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
    let io = |what: &str, path: &Path, e: std::io::Error| {
        CliError::Usage(format!("{what} {}: {e}", path.display()))
    };
    check_output(&args.output, &[&args.model, &exe])?;
    let mut program = File::open(&exe).map_err(|e| io("reading", &exe, e))?;
    let mut model = File::open(&args.model).map_err(|e| io("reading", &args.model, e))?;
    // Written under a fresh name beside the output and renamed over it only when complete:
    // an error or Ctrl-C leaves no partial file, and nothing else is ever overwritten (the
    // temporary file is removed when dropped unpersisted).
    let dir = match args.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".gemlet-bundle-")
        .tempfile_in(dir)
        .map_err(|e| io("writing in", dir, e))?;
    // Ctrl-C ends the process without dropping `tmp`: remove it there. (After the rename the
    // name is gone and the output complete.)
    let tmp_path = tmp.path().to_path_buf();
    ctrlc::set_handler(move || {
        let _ = std::fs::remove_file(&tmp_path);
        std::process::exit(130);
    })
    .map_err(|e| CliError::Usage(format!("installing the Ctrl-C handler: {e}")))?;
    let mut out = std::io::BufWriter::new(tmp.as_file());
    let e = bundle::write(&mut program, &mut model, &mut out)
        .and_then(|e| out.into_inner().map_err(|e| e.into_error()).map(|f| (e, f)))
        .and_then(|(e, f)| f.sync_all().map(|_| e))
        .map_err(|e| io("writing", &args.output, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("writing", &args.output, e))?;
    }
    tmp.persist(&args.output)
        .map_err(|e| io("writing", &args.output, e.error))?;
    eprintln!(
        "wrote {}: this program, then {} ({} bytes, at offset {}); run it without -m to use the model inside",
        args.output.display(),
        args.model.display(),
        e.len,
        e.offset
    );
    Ok(())
}

/// The output must be a new file or a regular one, and none of the `inputs` (the same file
/// under another name included): the rename would replace a device, or destroy the model.
fn check_output(output: &Path, inputs: &[&Path]) -> Result<(), CliError> {
    let Ok(meta) = std::fs::metadata(output) else {
        return Ok(());
    };
    if !meta.is_file() {
        return Err(CliError::Usage(format!(
            "-o {}: exists and is not a regular file (a directory or a device); give a new file name",
            output.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        for input in inputs {
            if let Ok(m) = std::fs::metadata(input) {
                if (m.dev(), m.ino()) == (meta.dev(), meta.ino()) {
                    return Err(CliError::Usage(format!(
                        "-o {} is {}, an input of the bundle: give another file name",
                        output.display(),
                        input.display()
                    )));
                }
            }
        }
    }
    Ok(())
}
