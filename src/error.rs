//! The configuration error, shared by every builder of the crate.

use std::fmt;

/// A configuration that cannot work, found when a layer, source or range set is built.
///
/// Every builder of the crate checks its input once, at build time, and answers this error
/// instead of failing later on a request. The message names what is wrong; when the input came
/// from a text (a range list), [`line`](Self::line) gives the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
    line: Option<usize>,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            line: None,
        }
    }

    pub(crate) fn at_line(line: usize, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            line: Some(line),
        }
    }

    /// The 1-based line of the input text the error was found on, when there was a text.
    pub fn line(&self) -> Option<usize> {
        self.line
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
