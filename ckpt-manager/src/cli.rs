//! What the `ckpt` tool and the `train` example share on their command lines (feature `cli`).

/// clap's message for a command line it rejected, on one line: its lines up to the usage and
/// the tips, joined, without the leading `error: ` (`"unexpected argument '--x' found"`).
pub fn usage_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let message = message.join(" ");
    match message.strip_prefix("error: ") {
        Some(rest) => rest.to_string(),
        None => message,
    }
}
