//! udev's value patterns: shell globs (`*`, `?`, `[a-z]`, `[!0-9]`) matched
//! against the whole value, with `|` between alternatives
//! (`"ttyUSB*|ttyACM*"`). Globs are compiled by the `glob` crate with `/`
//! treated as an ordinary character, as fnmatch does for udev.

use glob::MatchOptions;

const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

/// A compiled value pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    source: String,
    alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone, PartialEq)]
enum Alternative {
    Literal(String),
    Glob(glob::Pattern),
}

impl Pattern {
    /// Compiles `source`. An error carries the 0-based character offset in
    /// `source` where the problem is, and what it is.
    pub fn new(source: &str) -> Result<Self, (usize, String)> {
        let mut alternatives = Vec::new();
        let mut offset = 0;
        for part in source.split('|') {
            alternatives.push(alternative(part).map_err(|(at, message)| (offset + at, message))?);
            offset += part.chars().count() + 1;
        }
        Ok(Self {
            source: source.to_owned(),
            alternatives,
        })
    }

    /// Whether `value` matches one of the alternatives, as a whole.
    pub fn matches(&self, value: &str) -> bool {
        self.alternatives
            .iter()
            .any(|alternative| match alternative {
                Alternative::Literal(literal) => literal == value,
                Alternative::Glob(glob) => glob.matches_with(value, OPTIONS),
            })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

fn alternative(part: &str) -> Result<Alternative, (usize, String)> {
    if !part.contains(['*', '?', '[', ']']) {
        return Ok(Alternative::Literal(part.to_owned()));
    }
    // Runs of `*` mean one `*` to fnmatch; the glob crate gives `**` a
    // meaning of its own, so collapse them, remembering where each
    // character came from for error columns.
    let mut collapsed = String::with_capacity(part.len());
    let mut origin = Vec::with_capacity(part.len());
    let mut previous = None;
    for (index, c) in part.chars().enumerate() {
        if c == '*' && previous == Some('*') {
            continue;
        }
        collapsed.push(c);
        origin.push(index);
        previous = Some(c);
    }
    glob::Pattern::new(&collapsed)
        .map(Alternative::Glob)
        .map_err(|error| {
            let at = origin
                .get(error.pos)
                .copied()
                .unwrap_or(part.chars().count());
            (at, format!("invalid pattern {part:?}: {}", error.msg))
        })
}
