//! Any text as a chat template: it either fails to compile, or renders a conversation (or fails
//! to) within its fuel and output cap, never hanging or crashing.
#![no_main]

use gemlet::chat::{ChatTemplate, Message, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = ChatTemplate::jinja(source, "<bos>", "<eos>") else {
        return;
    };
    let messages = [
        Message::new(Role::System, "Be brief."),
        Message::new(Role::User, "Hello"),
        Message::new(Role::Assistant, "Hi."),
        Message::new(Role::User, "Bye"),
    ];
    let _ = t.render(&messages, true);
});
