//! An error with every cause behind it, in one line: what logs and answers show, so that a
//! warning never hides why (an S3 error's HTTP status, a connection's reset) behind its summary.

/// `error` and each of its sources, joined by ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
