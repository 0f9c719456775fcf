//! The thin layer that reads the live host's `/proc` and `/sys`, and the
//! one text shape several of those files share (`none [mq-deadline] bfq`).
//!
//! Everything above this module parses strings; only this module and the
//! `observe` functions of each check touch the real files, so tests feed
//! captured text instead.

use std::fs;
use std::io;
use std::path::Path;

/// Reads a small kernel file and trims the trailing newline.
pub(crate) fn read_trimmed(path: impl AsRef<Path>) -> io::Result<String> {
    fs::read_to_string(path).map(|text| text.trim().to_string())
}

/// Reads a small kernel file, or `None` when it is absent or unreadable
/// (the feature is not built in, or a container hides it).
pub(crate) fn read_optional(path: impl AsRef<Path>) -> Option<String> {
    read_trimmed(path).ok()
}

/// Reads and parses a number from a kernel file.
pub(crate) fn read_number<T: std::str::FromStr>(path: impl AsRef<Path>) -> Option<T> {
    read_optional(path)?.parse().ok()
}

/// A kernel choice list: the options offered and the one in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub selected: String,
    pub options: Vec<String>,
}

impl Choice {
    pub fn offers(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }
}

/// Parses `always [madvise] never` or `none [mq-deadline] kyber bfq`. A
/// single option without brackets (`none`) counts as selected.
pub fn parse_choice(text: &str) -> Option<Choice> {
    let mut selected = None;
    let mut options = Vec::new();
    for word in text.split_whitespace() {
        match word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            Some(inner) => {
                selected = Some(inner.to_string());
                options.push(inner.to_string());
            }
            None => options.push(word.to_string()),
        }
    }
    let selected = match (selected, options.as_slice()) {
        (Some(selected), _) => selected,
        (None, [only]) => only.clone(),
        _ => return None,
    };
    Some(Choice { selected, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_finds_the_bracketed_option() {
        let thp = parse_choice("always [madvise] never\n").unwrap();
        assert_eq!(thp.selected, "madvise");
        assert_eq!(thp.options, ["always", "madvise", "never"]);
        let scheduler = parse_choice("none [mq-deadline] kyber bfq ").unwrap();
        assert_eq!(scheduler.selected, "mq-deadline");
        assert!(scheduler.offers("none"));
        assert_eq!(parse_choice("[none]").unwrap().selected, "none");
        assert_eq!(parse_choice("none").unwrap().selected, "none");
        assert_eq!(parse_choice("a b"), None);
        assert_eq!(parse_choice(""), None);
    }
}

/// The value of one `Key:\tvalue` line of `/proc/<pid>/status`.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then(|| value.trim())
    })
}

/// An errno as its symbolic name and text, `EPERM (Operation not
/// permitted)`, so a finding names the error the way man pages do.
pub(crate) fn describe_errno(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return io::Error::from_raw_os_error(errno).to_string(),
    };
    let text = io::Error::from_raw_os_error(errno).to_string();
    // std appends " (os error N)"; the symbolic name says it better.
    let text = text.split(" (os error").next().unwrap_or(&text);
    format!("{name} ({text})")
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn status_fields_and_errnos() {
        let status = "Name:\tcat\nSeccomp:\t2\nCapEff:\t000001fffeffffff\n";
        assert_eq!(status_field(status, "Seccomp"), Some("2"));
        assert_eq!(status_field(status, "CapEff"), Some("000001fffeffffff"));
        assert_eq!(status_field(status, "Cap"), None);
        assert_eq!(describe_errno(libc::EPERM), "EPERM (Operation not permitted)");
    }
}
