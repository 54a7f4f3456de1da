//! `gemlet bundle`: one executable with a model inside, which chats without -m and which
//! `inspect` reads like a plain GGUF.

use crate::common;

#[test]
fn a_bundle_runs_the_model_inside_it() {
    let dir = common::scratch("bundle");
    let tiny = common::fixture("tiny/tiny-gemma3-f32.gguf");
    let tiny = tiny.to_str().unwrap();
    let out = dir.join("tiny-chat");
    let out_s = out.to_str().unwrap();
    let (_, err, ok) = common::run_gemlet(&["bundle", "-m", tiny, "-o", out_s], None);
    assert!(ok, "{err}");

    let run = |args: &[&str], stdin: &str| {
        let o = std::process::Command::new(&out)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(stdin.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    // Without a command or -m it chats with the model inside; the same reply as the plain file.
    let (plain, _, ok) = common::run_gemlet(
        &["chat", "-m", tiny, "--temp", "0", "-n", "8", "-t", "1"],
        Some("hello"),
    );
    assert!(ok);
    assert_eq!(run(&["--temp", "0", "-n", "8", "-t", "1"], "hello"), plain);
    assert_eq!(
        run(&["chat", "--temp", "0", "-n", "8", "-t", "1"], "hello"),
        plain
    );

    // inspect reads the GGUF inside, whole.
    let inspect = |path: &str| {
        let (o, e, ok) = common::run_gemlet(&["inspect", "--json", path], None);
        assert!(ok, "{e}");
        let mut j: serde_json::Value = serde_json::from_str(&o).unwrap();
        j.as_object_mut().unwrap().remove("file");
        // What the machine has free changes from one run to the next.
        j["memory"]
            .as_object_mut()
            .unwrap()
            .remove("available_bytes");
        j
    };
    assert_eq!(inspect(out_s), inspect(tiny));

    // Bundling from a bundle replaces the model rather than stacking a second one.
    let again = dir.join("again");
    let (_, err, ok) = std::process::Command::new(&out)
        .args(["bundle", "-m", tiny, "-o", again.to_str().unwrap()])
        .output()
        .map(|o| {
            (
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
                o.status.success(),
            )
        })
        .unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::metadata(&again).unwrap().len(),
        std::fs::metadata(&out).unwrap().len()
    );
    // The model may come from a bundle: its GGUF alone goes in.
    let nested = dir.join("nested");
    let (_, err, ok) = common::run_gemlet(
        &["bundle", "-m", out_s, "-o", nested.to_str().unwrap()],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(inspect(nested.to_str().unwrap()), inspect(tiny));
    // A file that is not a model is refused before anything is written.
    let (_, err, ok) = common::run_gemlet(
        &[
            "bundle",
            "-m",
            "Cargo.toml",
            "-o",
            dir.join("y").to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok && err.contains("Cargo.toml"), "{err}");
    assert!(!dir.join("y").exists());
}

/// Writing a bundle never destroys a file: the model itself as the output (under its own name
/// or another), a directory, or a device is refused before anything is written; a model whose
/// name is the old temporary name (`OUT.partial`) survives; a failed write leaves no partial
/// file behind.
#[test]
fn bundle_never_loses_a_file() {
    let dir = common::scratch("bundle-safe");
    let model = dir.join("m.partial");
    std::fs::copy(common::fixture("tiny/tiny-gemma3-f32.gguf"), &model).unwrap();
    let before = std::fs::read(&model).unwrap();
    let m = model.to_str().unwrap();
    let bundle = |out: &str| common::run_gemlet(&["bundle", "-m", m, "-o", out], None);

    let (_, err, ok) = bundle(m);
    assert!(!ok && err.contains("an input of the bundle"), "{err}");
    let link = dir.join("link");
    std::fs::hard_link(&model, &link).unwrap();
    let (_, err, ok) = bundle(link.to_str().unwrap());
    assert!(!ok && err.contains("an input of the bundle"), "{err}");
    std::fs::remove_file(&link).unwrap();
    let (_, err, ok) = bundle(dir.to_str().unwrap());
    assert!(!ok && err.contains("not a regular file"), "{err}");
    let (_, err, ok) = bundle("/dev/null");
    assert!(!ok && err.contains("not a regular file"), "{err}");

    // The output's old temporary name was the model's: it stays.
    let (_, err, ok) = bundle(dir.join("m").to_str().unwrap());
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&model).unwrap(), before, "the model changed");

    // A directory that cannot be written: an error, and nothing left behind.
    let (_, err, ok) = bundle("/proc/gemlet-bundle");
    assert!(!ok, "{err}");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["m", "m.partial"], "left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A bundle whose trailer is damaged or whose end is cut off says so, instead of acting as a
/// plain gemlet that does not know the flags it was started with.
#[test]
fn a_damaged_bundle_says_it_lost_its_model() {
    let dir = common::scratch("bundle-damaged");
    let tiny = common::fixture("tiny/tiny-gemma3-f32.gguf");
    let good = dir.join("good");
    let (_, err, ok) = common::run_gemlet(
        &[
            "bundle",
            "-m",
            tiny.to_str().unwrap(),
            "-o",
            good.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{err}");
    let bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    let mut bad_magic = bytes.clone();
    bad_magic[n - 8..].copy_from_slice(b"XXXXXXXX");
    let mut bad_offset = bytes.clone();
    bad_offset[n - 20] ^= 0xff;
    let cut = bytes[..n - 100_000].to_vec();
    for (name, content, needle) in [
        ("magic", bad_magic, "lack the trailer"),
        ("offset", bad_offset, "trailer does not match"),
        ("cut", cut, "lack the trailer"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // Another test's fork may briefly hold the file open for writing (ETXTBSY).
        let out = loop {
            match std::process::Command::new(&path)
                .args(["--temp", "0", "-n", "2"])
                .output()
            {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                r => break r.unwrap(),
            }
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains("carries a model (gemlet bundle)") && err.contains(needle),
            "{name}: {err}"
        );
    }
    // gemlet itself with flags and no command is still a usage error.
    let (_, err, ok) = common::run_gemlet(&["--temp", "0"], None);
    assert!(!ok && err.contains("unexpected argument"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A write that fails midway (the file-size limit standing in for a full disk) and Ctrl-C
/// while writing leave nothing behind: no output, no temporary file.
#[test]
fn a_failed_or_interrupted_bundle_leaves_nothing() {
    use std::os::unix::process::CommandExt;
    let dir = common::scratch("bundle-fails");
    let listing = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let tiny = common::fixture("tiny/tiny-gemma3-f32.gguf");
    let out = dir.join("out");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gemlet"));
    cmd.args([
        "bundle",
        "-m",
        tiny.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec. Ignoring SIGXFSZ makes a
    // write past the limit fail with EFBIG, as a full disk fails with ENOSPC.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("writing") && err.contains("too large"),
        "{err}"
    );
    assert!(listing(&dir).is_empty(), "left behind: {:?}", listing(&dir));

    // Ctrl-C once the temporary file is there (the real model: 253 MB to write).
    let model = common::real_model();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gemlet"))
        .args([
            "bundle",
            "-m",
            model.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while listing(&dir).is_empty() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let left = listing(&dir);
    if out.exists() {
        // It finished before the signal: then it is whole.
        assert!(status.success());
        assert_eq!(left, ["out"]);
        let (_, err, ok) = common::run_gemlet(&["inspect", out.to_str().unwrap()], None);
        assert!(ok, "{err}");
    } else {
        assert_eq!(status.code(), Some(130), "{status:?}");
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
