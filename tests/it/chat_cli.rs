//! `gemlet chat` as a user runs it: piped (one answer, only the reply on stdout) and on a
//! pseudo-terminal (streamed replies, a second turn, Ctrl-C mid-reply, /clear, /exit), on the
//! real model, greedy so the replies are known.

use crate::common;

use gemlet::chat::Overflow;
use gemlet::model::Model;
use gemlet::sampling::{Sampler, SamplerParams};
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn gemlet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gemlet"))
}

fn piped_chat(args: &[&str], stdin: &str) -> (String, String, bool) {
    let mut all = vec!["chat"];
    all.extend_from_slice(args);
    common::run_gemlet(&all, Some(stdin))
}

/// Piped, chat answers once and prints only the reply: the same text `generate` continues
/// from the hand-written Gemma turn.
#[test]
fn piped_chat_answers_once_with_the_reply_only() {
    let _one = common::exclusive();
    let model = common::real_model();
    let m = model.to_str().unwrap();
    let q = "What is the capital of France?";
    let (out, err, ok) = piped_chat(&["-m", m, "--temp", "0", "-n", "24", "-t", "2"], q);
    assert!(ok, "{err}");
    assert_eq!(err, "", "nothing but the reply is printed");
    let turn = format!("<start_of_turn>user\n{q}<end_of_turn>\n<start_of_turn>model\n");
    let gen = gemlet()
        .args([
            "generate", "-m", m, "--temp", "0", "-n", "24", "-t", "2", "-p",
        ])
        .arg(&turn)
        .output()
        .unwrap();
    assert!(gen.status.success());
    let expected = String::from_utf8(gen.stdout).unwrap();
    assert_eq!(out, expected);
    assert!(out.len() > 10, "{out:?}");

    // -p gives the message; stdin is not read.
    let (out_p, _, ok) = piped_chat(
        &["-m", m, "--temp", "0", "-n", "24", "-t", "2", "-p", q],
        "",
    );
    assert!(ok);
    assert_eq!(out_p, expected);

    // Nothing to answer: a clear error, exit 1.
    let (_, err, ok) = piped_chat(&["-m", m], "  \n");
    assert!(!ok);
    assert!(err.contains("stdin was empty"), "{err}");
}

/// The replies the library gives for `messages` with the pty test's settings ("/clear" starts a
/// new conversation, as the command does, and has no reply).
fn expected_replies(messages: &[&str], n: usize) -> Vec<String> {
    let model = Model::load(common::real_model()).unwrap();
    let mut chat = common::chat(&model, Overflow::DropOldest);
    let mut sampler = Sampler::new(SamplerParams::greedy());
    sampler.ban(model.tokenizer().eog());
    let never = AtomicBool::new(false);
    messages
        .iter()
        .filter_map(|&m| {
            if m == "/clear" {
                chat.clear();
                return None;
            }
            let mut reply = String::new();
            chat.send(m, &mut sampler, n, &never, |t| reply.push_str(t))
                .unwrap();
            Some(reply)
        })
        .collect()
}

#[test]
fn interactive_chat_on_a_terminal() {
    let _one = common::exclusive();
    let first = "Write a short poem about the sea.";
    let second = "Now one about the mountains.";
    let third = "Count from one to one hundred.";
    let fourth = "Thank you.";
    let n = 48;
    let expected = expected_replies(&[first, second, "/clear", first], n);

    let mut cmd = gemlet();
    cmd.env("TERM", "xterm").args([
        "chat",
        "-m",
        common::real_model().to_str().unwrap(),
        "--temp",
        "0",
        "-t",
        "2",
        "--ignore-eos",
        "-n",
        &n.to_string(),
    ]);
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).unwrap();
    p.exp_string("/help for commands").unwrap();
    p.exp_string("> ").unwrap();

    // Two turns: each reply streams out and equals the library's.
    for (msg, reply) in [(first, &expected[0]), (second, &expected[1])] {
        p.send_line(msg).unwrap();
        let tty_reply = reply.replace('\n', "\r\n");
        p.exp_string(&tty_reply).unwrap();
        p.exp_string("> ").unwrap();
    }
    p.send_line("/stats").unwrap();
    p.exp_string("reused from the cache").unwrap();
    let (_, used) = p.exp_regex(r"context: \d+ of 4096 positions used").unwrap();
    let used_before: usize = used.split_whitespace().nth(1).unwrap().parse().unwrap();

    // Ctrl-C while the reply streams stops it and returns to the prompt; the conversation goes on.
    p.send_line("/help").unwrap();
    p.exp_string("Ctrl-C during a reply stops it").unwrap();
    p.send_line(third).unwrap();
    p.exp_string(third).unwrap();
    // Wait for the reply to start, then interrupt it.
    p.exp_regex(r"\r\n\S").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("(stopped)").unwrap();
    p.exp_string("> ").unwrap();
    p.send_line(fourth).unwrap();
    p.exp_string("> ").unwrap();
    p.send_line("/stats").unwrap();
    let (_, used) = p.exp_regex(r"context: \d+ of 4096 positions used").unwrap();
    let used_after: usize = used.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        used_after > used_before + 10,
        "the interrupted turn and the next one stay in the context ({used_before} -> {used_after})"
    );

    // /clear starts over, reusing the cached prompt of the first message: its last token is
    // evaluated again on its own, so the reply is the library's after the same steps. (It may
    // differ from the first reply: a batch and a single token run different kernels where
    // K-quants are repacked for batches.)
    p.send_line("/clear").unwrap();
    p.exp_string("(new conversation)").unwrap();
    p.send_line(first).unwrap();
    p.exp_string(&expected[2].replace('\n', "\r\n")).unwrap();
    p.exp_string("> ").unwrap();
    p.send_line("/exit").unwrap();
    p.exp_eof().unwrap();
    let status = p.process_mut().wait().unwrap();
    assert!(
        matches!(status, rexpect::process::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

/// Output that cannot be written: a reader that stops early (`| head -c 10`) ends the run
/// quietly; a full disk (`> /dev/full`) is an error with exit code 1. Neither panics.
#[test]
fn output_closed_early_or_full_ends_cleanly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let tiny = common::fixture("tiny/tiny-gemma3-f32.gguf");
    let tiny = tiny.to_str().unwrap();
    let runs: [&[&str]; 2] = [
        &[
            "generate", "-m", tiny, "-p", "hi", "-n", "500", "--temp", "0",
        ],
        &["chat", "-m", tiny, "-p", "hi", "-n", "500", "--temp", "0"],
    ];
    for args in runs {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gemlet"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 10];
        child.stdout.take().unwrap().read_exact(&mut head).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.contains("panicked"),
            "{args:?}: {err}"
        );

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("No space left on device"), "{args:?}: {err}");
    }
}
