//! Conversations through the library: templates, what each turn evaluates, context overflow,
//! interrupted replies. Mechanics on a tiny model; templates and turn costs on the real one.

use crate::common;

use gemlet::chat::{Chat, ChatError, ChatTemplate, Message, Overflow, Role, TurnStats};
use gemlet::model::Model;
use gemlet::sampling::{Sampler, SamplerParams};
use gemlet::session::{Session, SessionParams, Stop};
use std::sync::atomic::{AtomicBool, Ordering};

fn tiny() -> Model {
    Model::load(common::fixture("tiny/tiny-gemma3-f32.gguf")).unwrap()
}

fn chat(model: &Model, n_ctx: usize, overflow: Overflow) -> Chat<'_> {
    let params = SessionParams {
        n_ctx,
        n_batch: 64,
        n_threads: 1,
        ..SessionParams::default()
    };
    let session = Session::new(model, params).unwrap();
    Chat::new(
        session,
        ChatTemplate::for_model(model, None).unwrap(),
        overflow,
    )
}

/// A greedy sampler that never ends a reply early: replies are exactly `n` tokens.
fn sampler(model: &Model) -> Sampler {
    let mut s = Sampler::new(SamplerParams::greedy());
    s.ban(model.tokenizer().eog());
    s
}

fn send(chat: &mut Chat<'_>, s: &mut Sampler, msg: &str, n: usize) -> (TurnStats, String) {
    let never = AtomicBool::new(false);
    let mut reply = String::new();
    let stats = chat.send(msg, s, n, &never, |t| reply.push_str(t)).unwrap();
    (stats, reply)
}

/// The text the template gives the conversation (with the generation prompt).
fn rendered(model: &Model, messages: &[Message]) -> String {
    ChatTemplate::for_model(model, None)
        .unwrap()
        .render(messages, true)
        .unwrap()
}

#[test]
fn each_turn_evaluates_only_its_own_tokens() {
    let model = tiny();
    let tok = model.tokenizer();
    let mut c = chat(&model, 1024, Overflow::Stop);
    let mut s = sampler(&model);
    let (first, _) = send(&mut c, &mut s, "hello there", 8);
    let prompt1 = rendered(&model, &c.messages()[..1]);
    assert_eq!(first.reused_tokens, 0);
    assert_eq!(
        &c.session().tokens()[..first.prompt_tokens],
        &tok.encode(&prompt1, false, true).unwrap()[..],
        "the first prompt is the rendered template, BOS included"
    );
    for (i, msg) in ["a second message", "and a third, longer message"]
        .iter()
        .enumerate()
    {
        let before = c.session().n_past();
        let (stats, reply) = send(&mut c, &mut s, msg, 8);
        // The cache held the previous prompt and the reply but its last token (sampled, not yet
        // evaluated). This turn evaluates that token, the end of the model's turn and the new
        // user turn, in Gemma's format: nothing before it again.
        let delta = format!(
            "<end_of_turn>\n<start_of_turn>user\n{msg}<end_of_turn>\n<start_of_turn>model\n"
        );
        let delta = tok.encode(&delta, false, true).unwrap();
        assert_eq!(stats.reused_tokens, before, "turn {}", i + 2);
        assert_eq!(stats.prompt_tokens, 1 + delta.len(), "turn {}", i + 2);
        assert_eq!(
            &c.session().tokens()[before + 1..before + 1 + delta.len()],
            &delta[..]
        );
        assert_eq!(stats.generated_tokens, 8);
        assert_eq!(stats.stop, Stop::Limit);
        assert_eq!(
            c.messages().last().unwrap(),
            &Message::new(Role::Assistant, reply)
        );
    }
}

#[test]
fn clear_and_system_prompt_reuse_the_common_prefix() {
    let model = tiny();
    let tok = model.tokenizer();
    let mut c = chat(&model, 1024, Overflow::Stop);
    let mut s = sampler(&model);
    c.set_system("be brief");
    send(&mut c, &mut s, "one", 4);
    send(&mut c, &mut s, "two", 4);
    c.clear();
    let (stats, _) = send(&mut c, &mut s, "three", 4);
    // BOS, the start of the user turn and the system prompt are still in the cache.
    let head = rendered(&model, &[Message::new(Role::System, "be brief")][..]);
    let head_tokens = tok.encode(&head, false, true).unwrap().len();
    assert!(
        stats.reused_tokens >= head_tokens,
        "{} reused, the system prompt alone is {head_tokens} tokens",
        stats.reused_tokens
    );
    assert_eq!(c.messages().len(), 3, "system, user, assistant");
    let expected = tok.encode(&rendered(&model, &c.messages()[..2]), false, true);
    assert_eq!(
        &c.session().tokens()[..stats.reused_tokens + stats.prompt_tokens],
        &expected.unwrap()[..]
    );
}

#[test]
fn a_full_context_drops_the_oldest_exchanges_or_refuses() {
    let model = tiny();
    let mut s = sampler(&model);
    let msg = "tell me something about the sea and the sky";

    let mut c = chat(&model, 128, Overflow::DropOldest);
    c.set_system("sys");
    let mut dropped = 0;
    for _ in 0..12 {
        let (stats, _) = send(&mut c, &mut s, msg, 16);
        assert!(stats.n_past <= 128);
        dropped += stats.dropped_turns;
    }
    assert!(dropped > 0, "12 turns of ~70 tokens cannot fit in 128");
    let m = c.messages();
    assert_eq!(
        m[0],
        Message::new(Role::System, "sys"),
        "the system prompt stays"
    );
    assert!(m.len() < 1 + 2 * 12);

    let mut c = chat(&model, 128, Overflow::Stop);
    let mut refused = None;
    for _ in 0..12 {
        let never = AtomicBool::new(false);
        match c.send(msg, &mut s, 16, &never, |_| {}) {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the context fills up");
    assert!(
        matches!(e, ChatError::ContextFull { n_ctx: 128, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("/clear"), "{e}");
    // The refused message is not part of the conversation, and /clear makes room again.
    assert_eq!(c.messages().last().unwrap().role, Role::Assistant);
    c.clear();
    send(&mut c, &mut s, msg, 16);

    // One message longer than the whole context is refused even with context shift.
    let mut c = chat(&model, 64, Overflow::DropOldest);
    let never = AtomicBool::new(false);
    let e = c
        .send(&msg.repeat(10), &mut s, 4, &never, |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("raise -c"), "{e}");
    assert!(c.messages().is_empty());
}

#[test]
fn an_interrupted_reply_stays_in_the_conversation() {
    let model = tiny();
    let mut c = chat(&model, 1024, Overflow::Stop);
    let mut s = sampler(&model);
    let stop = AtomicBool::new(false);
    let mut shown = String::new();
    let mut chunks = 0;
    let stats = c
        .send("hello", &mut s, 100, &stop, |t| {
            shown.push_str(t);
            chunks += 1;
            if chunks == 5 {
                stop.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert_eq!(stats.stop, Stop::Interrupted);
    assert_eq!(stats.generated_tokens, 5);
    let m = c.messages();
    assert_eq!(m.last().unwrap(), &Message::new(Role::Assistant, shown));
    // The next turn goes on from the cache.
    let before = c.session().n_past();
    let (next, _) = send(&mut c, &mut s, "go on", 4);
    assert_eq!(next.reused_tokens, before);

    // Stopped before the reply starts (during the prompt): an empty reply, turns still alternate.
    stop.store(true, Ordering::Relaxed);
    let stats = c.send("again", &mut s, 10, &stop, |_| {}).unwrap();
    assert_eq!(stats.stop, Stop::Interrupted);
    assert_eq!(stats.generated_tokens, 0);
    let (after, _) = send(&mut c, &mut s, "and now", 4);
    assert_eq!(after.generated_tokens, 4);
}

/// Gemma 2's own Jinja template (tests/fixtures/templates) and gemlet's built-in Gemma turn
/// format give the same tokens on the real vocabulary, with and without a system prompt (which
/// that template refuses, so it is folded into the first user turn as Gemma 3's template does).
#[test]
fn gemma_jinja_template_matches_the_builtin_turn_format() {
    let model = Model::load(common::real_model()).unwrap();
    let tok = model.tokenizer();
    let src =
        std::fs::read_to_string(common::fixture("templates/google-gemma-2-2b-it.jinja")).unwrap();
    let jinja = ChatTemplate::for_model(&model, Some(&src)).unwrap();
    let builtin = ChatTemplate::for_model(&model, None).unwrap();
    assert!(builtin.is_builtin(), "the base model ships no template");
    let turns = [
        Message::new(Role::User, "  Write a haiku about the sea.\n"),
        Message::new(Role::Assistant, "Waves fold into foam,\nsalt wind ..."),
        Message::new(
            Role::User,
            "Now one about the <b>sky</b> — in français, s'il te plaît!",
        ),
    ];
    let with_system: Vec<Message> = std::iter::once(Message::new(Role::System, "Be terse."))
        .chain(turns.iter().cloned())
        .collect();
    for messages in [&turns[..1], &turns[..], &with_system[..]] {
        for gen in [true, false] {
            let a = jinja.render(messages, gen).unwrap();
            let b = builtin.render(messages, gen).unwrap();
            let ids_a = tok.encode(&a, false, true).unwrap();
            let ids_b = tok.encode(&b, false, true).unwrap();
            assert_eq!(ids_a, ids_b, "{a:?}\nvs\n{b:?}");
            assert_eq!(ids_a[0], tok.bos().unwrap());
        }
    }
    let a = jinja.render(&turns[..1], true).unwrap();
    assert_eq!(
        a,
        "<bos><start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n"
    );
    // The template's own checks come through as errors.
    let bad = [turns[0].clone(), turns[0].clone()];
    let e = jinja.render(&bad, true).unwrap_err().to_string();
    assert!(e.contains("must alternate"), "{e}");
}

/// Ten turns on the real model: every turn evaluates only its own few tokens, so the time to
/// the first token stays flat. Prints the figures (timings are reported, never asserted).
#[test]
fn real_model_ten_turns_cost_their_own_tokens() {
    let _one = common::exclusive();
    let model = Model::load(common::real_model()).unwrap();
    let mut c = common::chat(&model, Overflow::Stop);
    let mut s = sampler(&model);
    let mut prompt_counts = Vec::new();
    for turn in 1..=10 {
        let msg = format!("Tell me fact number {turn} about lighthouses.");
        let before = c.session().n_past();
        let (st, _) = send(&mut c, &mut s, &msg, 24);
        eprintln!(
            "turn {turn:2}: context {before:4} -> {:4}, prompt {:2} tokens evaluated, first token {:6.1} ms, {:5.1} t/s",
            st.n_past,
            st.prompt_tokens,
            st.first_token_ms,
            st.generate_tps()
        );
        if turn > 1 {
            assert_eq!(
                st.reused_tokens, before,
                "turn {turn} reuses the whole cache"
            );
        }
        prompt_counts.push(st.prompt_tokens);
    }
    // Turn 1 holds BOS; later turns add the previous reply's last token and the turn markers.
    assert!(
        prompt_counts[1..]
            .iter()
            .all(|&n| n <= prompt_counts[0] + 8),
        "{prompt_counts:?}"
    );
}
