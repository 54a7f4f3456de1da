//! Chat: conversations rendered through the model's chat template and evaluated turn by turn,
//! reusing the KV cache.

mod conversation;
mod template;

pub use conversation::{Chat, ChatError, Overflow, TurnStats};
pub use template::{ChatTemplate, Message, Role, TemplateError, TEMPLATE_KEY};
