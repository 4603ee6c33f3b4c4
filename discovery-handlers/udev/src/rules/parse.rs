//! The text of one rule into [`Rule`]: `KEY[{name}] OP "value"` terms
//! separated by commas, as in a udev rules file (one line, matches only).
//!
//! Every error carries the 1-based column (in characters) where the problem
//! starts; [`super::Rules::parse`] adds which rule it was.

use std::fmt;

use super::pattern::Pattern;
use super::{Key, Op, Rule, Term};

/// A rule that cannot be parsed: where, and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based column, in characters, where the problem starts.
    pub column: usize,
    /// What is wrong, written for the DeviceSet's author.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// Keys that udev knows but that make no sense for discovery, with why.
const REFUSED: &[(&str, &str)] = &[
    (
        "ACTION",
        "discovery reports the devices that exist, not events; drop the ACTION match",
    ),
    (
        "PROGRAM",
        "the handler never runs programs; match on ENV{} or ATTR{} instead",
    ),
    (
        "RESULT",
        "the handler never runs programs; match on ENV{} or ATTR{} instead",
    ),
    (
        "TEST",
        "file tests are not supported; match on ATTR{} instead",
    ),
    (
        "SYSCTL",
        "kernel parameters are not matched; match on ATTR{} instead",
    ),
    ("CONST", "CONST{} is not supported"),
    (
        "GOTO",
        "rules here have no labels: each rule is a match on its own",
    ),
    (
        "LABEL",
        "rules here have no labels: each rule is a match on its own",
    ),
    ("IMPORT", "IMPORT is an action, and rules here only match"),
    ("RUN", "RUN is an action, and rules here only match"),
    (
        "OWNER",
        "OWNER is an action; set device-node permissions with `permissions`",
    ),
    (
        "GROUP",
        "GROUP is an action; set device-node permissions with `permissions`",
    ),
    (
        "MODE",
        "MODE is an action; set device-node permissions with `permissions`",
    ),
    ("OPTIONS", "OPTIONS is an action, and rules here only match"),
    (
        "SECLABEL",
        "SECLABEL is an action, and rules here only match",
    ),
];

/// The keys accepted, for error messages.
pub const KNOWN_KEYS: &str = "KERNEL, SUBSYSTEM, DRIVER, DEVPATH, NAME, SYMLINK, ATTR{..}, \
     ENV{..}, TAG, KERNELS, SUBSYSTEMS, DRIVERS, ATTRS{..}, TAGS";

/// Parses one rule.
pub fn rule(text: &str) -> Result<Rule, ParseError> {
    let mut cursor = Cursor::new(text);
    let mut terms = Vec::new();
    loop {
        cursor.skip_space();
        if cursor.at_end() {
            break;
        }
        terms.push(term(&mut cursor)?);
        cursor.skip_space();
        match cursor.peek() {
            None => break,
            Some(',') => {
                cursor.bump();
            }
            Some(other) => {
                return Err(cursor.error(format!("expected `,` between matches, found {other:?}")));
            }
        }
    }
    if terms.is_empty() {
        return Err(ParseError {
            column: 1,
            message: "the rule is empty: give at least one match, e.g. SUBSYSTEM==\"tty\""
                .to_owned(),
        });
    }
    Ok(Rule::new(terms))
}

fn term(cursor: &mut Cursor<'_>) -> Result<Term, ParseError> {
    let column = cursor.column();
    let name = cursor.take_while(|c| c.is_alphanumeric() || c == '_');
    if name.is_empty() {
        return Err(cursor.error(match cursor.peek() {
            Some(c) => format!("expected a key such as SUBSYSTEM, found {c:?}"),
            None => "expected a key such as SUBSYSTEM".to_owned(),
        }));
    }
    let argument = if cursor.peek() == Some('{') {
        cursor.bump();
        let arg_column = cursor.column();
        let arg = cursor.take_while(|c| !matches!(c, '}' | '"' | ',' | '=' | '!'));
        if cursor.peek() != Some('}') {
            return Err(cursor.error(format!("`{name}{{` is not closed with `}}`")));
        }
        cursor.bump();
        if arg.trim().is_empty() {
            return Err(ParseError {
                column: arg_column,
                message: format!("`{name}{{}}` needs a name between the braces"),
            });
        }
        Some(arg.to_owned())
    } else {
        None
    };
    let key = key(name, argument, column)?;

    cursor.skip_space();
    let op_column = cursor.column();
    let op = cursor.take_while(|c| matches!(c, '=' | '!' | '+' | '-' | ':'));
    let op = match op {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "=" | "+=" | "-=" | ":=" => {
            return Err(ParseError {
                column: op_column,
                message: format!("`{op}` assigns, and rules here only match: use `==` or `!=`"),
            });
        }
        "" => {
            return Err(ParseError {
                column: op_column,
                message: format!("expected `==` or `!=` after {}", key.display_name()),
            });
        }
        other => {
            return Err(ParseError {
                column: op_column,
                message: format!("unknown operator `{other}`: use `==` or `!=`"),
            });
        }
    };

    cursor.skip_space();
    let value_column = cursor.column();
    let value = quoted(cursor)?;
    let pattern = Pattern::new(&value).map_err(|(offset, message)| ParseError {
        // +1 for the opening quote; the offset counts the value's characters.
        column: value_column + 1 + offset,
        message,
    })?;
    Ok(Term {
        key,
        op,
        pattern,
        column,
    })
}

fn key(name: &str, argument: Option<String>, column: usize) -> Result<Key, ParseError> {
    let error = |message: String| ParseError { column, message };
    let needs_argument = matches!(name, "ATTR" | "ATTRS" | "ENV");
    let plain = matches!(
        name,
        "KERNEL"
            | "SUBSYSTEM"
            | "DRIVER"
            | "DEVPATH"
            | "NAME"
            | "SYMLINK"
            | "TAG"
            | "KERNELS"
            | "SUBSYSTEMS"
            | "DRIVERS"
            | "TAGS"
    );
    match &argument {
        None if needs_argument => {
            return Err(error(format!(
                "{name} needs a name in braces, e.g. {name}{{idVendor}}"
            )));
        }
        Some(_) if plain => {
            return Err(error(format!("{name} takes no {{...}} argument")));
        }
        _ => {}
    }
    let key = match (name, argument) {
        ("KERNEL", None) => Key::Kernel,
        ("SUBSYSTEM", None) => Key::Subsystem,
        ("DRIVER", None) => Key::Driver,
        ("DEVPATH", None) => Key::Devpath,
        ("NAME", None) => Key::Name,
        ("SYMLINK", None) => Key::Symlink,
        ("TAG", None) => Key::Tag,
        ("ATTR", Some(attr)) => Key::Attr(attr),
        ("ENV", Some(var)) => Key::Env(var),
        ("KERNELS", None) => Key::Kernels,
        ("SUBSYSTEMS", None) => Key::Subsystems,
        ("DRIVERS", None) => Key::Drivers,
        ("TAGS", None) => Key::Tags,
        ("ATTRS", Some(attr)) => Key::Attrs(attr),
        (name, _) => {
            if let Some((_, why)) = REFUSED.iter().find(|(refused, _)| *refused == name) {
                return Err(error(format!("{name} is not supported: {why}")));
            }
            let upper = name.to_ascii_uppercase();
            let hint = if upper != name && upper.chars().all(|c| c.is_ascii_uppercase()) {
                format!(" (keys are upper case: {upper})")
            } else {
                String::new()
            };
            return Err(error(format!(
                "unknown key {name:?}{hint}; known keys: {KNOWN_KEYS}"
            )));
        }
    };
    Ok(key)
}

/// A double-quoted value; `\"` and `\\` are the only escapes, as in udev.
fn quoted(cursor: &mut Cursor<'_>) -> Result<String, ParseError> {
    match cursor.peek() {
        Some('"') => {
            cursor.bump();
        }
        Some(c) => {
            return Err(cursor.error(format!("expected a value in double quotes, found {c:?}")));
        }
        None => return Err(cursor.error("expected a value in double quotes".to_owned())),
    }
    let start = cursor.column() - 1;
    let mut value = String::new();
    loop {
        match cursor.bump() {
            None => {
                return Err(ParseError {
                    column: start,
                    message: "the value's closing `\"` is missing".to_owned(),
                });
            }
            Some('"') => return Ok(value),
            Some('\\') => match cursor.peek() {
                Some(c @ ('"' | '\\')) => {
                    cursor.bump();
                    value.push(c);
                }
                _ => value.push('\\'),
            },
            Some(c) => value.push(c),
        }
    }
}

/// Characters of the rule with their 1-based column.
struct Cursor<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    offset: usize,
    /// Column of the next character.
    column: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            offset: 0,
            column: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        self.column += 1;
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.offset >= self.text.len()
    }

    fn column(&self) -> usize {
        self.column
    }

    fn skip_space(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.offset;
        while let Some(c) = self.peek() {
            if !keep(c) {
                break;
            }
            self.bump();
        }
        &self.text[start..self.offset]
    }

    fn error(&self, message: String) -> ParseError {
        ParseError {
            column: self.column,
            message,
        }
    }
}
