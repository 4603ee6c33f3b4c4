//! udev rules as the DeviceSet gives them, parsed once and matched against
//! devices.
//!
//! ```text
//!   details.rules[i] ──parse::rule──► Rule { own terms, parent terms }
//!   Rules::matches(device) = any rule where
//!       every own term holds on the device, and
//!       every parent term holds on ONE device of the chain device → parent → ...
//! ```
//!
//! That is udev's own meaning: KERNEL, SUBSYSTEM, DRIVER, ATTR{}, ENV{},
//! TAG, NAME, SYMLINK and DEVPATH look at the device; KERNELS, SUBSYSTEMS,
//! DRIVERS, ATTRS{} and TAGS look at the device and its ancestors, and all
//! of them must hold on the same one. Matching goes through [`Node`], so it
//! is tested without libudev.

mod parse;
mod pattern;

use std::fmt;

pub use parse::ParseError;
pub use pattern::Pattern;

/// What a rule can ask of a device; implemented over libudev and, in the
/// tests, over plain data.
pub trait Node: Sized {
    /// The kernel name (`ttyUSB0`).
    fn sysname(&self) -> String;
    /// The subsystem (`tty`), if any.
    fn subsystem(&self) -> Option<String>;
    /// The bound driver (`ftdi_sio`), if any.
    fn driver(&self) -> Option<String>;
    /// The devpath (`/devices/.../ttyUSB0/tty/ttyUSB0`).
    fn devpath(&self) -> String;
    /// The device node (`/dev/ttyUSB0`), if any.
    fn devnode(&self) -> Option<String>;
    /// A sysfs attribute, if readable.
    fn attribute(&self, name: &str) -> Option<String>;
    /// A udev property, if set.
    fn property(&self, name: &str) -> Option<String>;
    /// The parent device, if any.
    fn parent(&self) -> Option<Self>;

    /// The udev tags (from the `TAGS` property, `:a:b:`).
    fn tags(&self) -> Vec<String> {
        self.property("TAGS")
            .map(|tags| {
                tags.split(':')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The device's symlinks below /dev (from `DEVLINKS`), without `/dev/`.
    fn symlinks(&self) -> Vec<String> {
        self.property("DEVLINKS")
            .map(|links| links.split_whitespace().map(strip_dev).collect())
            .unwrap_or_default()
    }
}

fn strip_dev(path: &str) -> String {
    path.strip_prefix("/dev/").unwrap_or(path).to_owned()
}

/// A match key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `KERNEL`: the device's kernel name.
    Kernel,
    /// `SUBSYSTEM`.
    Subsystem,
    /// `DRIVER`: the device's own driver.
    Driver,
    /// `DEVPATH`.
    Devpath,
    /// `NAME`: the device node, without `/dev/`.
    Name,
    /// `SYMLINK`: any of the device's links, without `/dev/`.
    Symlink,
    /// `TAG`: any of the device's tags.
    Tag,
    /// `ATTR{name}`: a sysfs attribute of the device.
    Attr(String),
    /// `ENV{name}`: a udev property of the device.
    Env(String),
    /// `KERNELS`: the kernel name of the device or an ancestor.
    Kernels,
    /// `SUBSYSTEMS`.
    Subsystems,
    /// `DRIVERS`.
    Drivers,
    /// `TAGS`.
    Tags,
    /// `ATTRS{name}`.
    Attrs(String),
}

impl Key {
    /// Whether the key looks up the chain of ancestors.
    fn on_parents(&self) -> bool {
        matches!(
            self,
            Self::Kernels | Self::Subsystems | Self::Drivers | Self::Tags | Self::Attrs(_)
        )
    }

    /// The key as written in a rule.
    pub fn display_name(&self) -> String {
        match self {
            Self::Kernel => "KERNEL".into(),
            Self::Subsystem => "SUBSYSTEM".into(),
            Self::Driver => "DRIVER".into(),
            Self::Devpath => "DEVPATH".into(),
            Self::Name => "NAME".into(),
            Self::Symlink => "SYMLINK".into(),
            Self::Tag => "TAG".into(),
            Self::Attr(name) => format!("ATTR{{{name}}}"),
            Self::Env(name) => format!("ENV{{{name}}}"),
            Self::Kernels => "KERNELS".into(),
            Self::Subsystems => "SUBSYSTEMS".into(),
            Self::Drivers => "DRIVERS".into(),
            Self::Tags => "TAGS".into(),
            Self::Attrs(name) => format!("ATTRS{{{name}}}"),
        }
    }

    /// The values of the key on `node`: one (maybe missing), or several for
    /// TAG and SYMLINK.
    fn values<N: Node>(&self, node: &N) -> Values {
        match self {
            Self::Kernel | Self::Kernels => Values::One(Some(node.sysname())),
            Self::Subsystem | Self::Subsystems => Values::One(node.subsystem()),
            Self::Driver | Self::Drivers => Values::One(node.driver()),
            Self::Devpath => Values::One(Some(node.devpath())),
            Self::Name => Values::One(node.devnode().map(|n| strip_dev(&n))),
            Self::Attr(name) | Self::Attrs(name) => {
                Values::One(node.attribute(name).map(|v| v.trim_end().to_owned()))
            }
            Self::Env(name) => Values::One(node.property(name)),
            Self::Symlink => Values::Many(node.symlinks()),
            Self::Tag | Self::Tags => Values::Many(node.tags()),
        }
    }
}

enum Values {
    One(Option<String>),
    Many(Vec<String>),
}

/// `==` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`: the value matches the pattern.
    Eq,
    /// `!=`: the value does not match the pattern.
    Ne,
}

/// One `KEY OP "value"` of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// What is looked at.
    pub key: Key,
    /// How.
    pub op: Op,
    /// Against what.
    pub pattern: Pattern,
    /// The 1-based column where the term starts in its rule.
    pub column: usize,
}

impl Term {
    fn holds<N: Node>(&self, node: &N) -> bool {
        let found = match self.key.values(node) {
            // A missing attribute fails the term whatever the operator, as
            // in udev: `ATTRS{idVendor}!="0403"` wants a device that HAS
            // another vendor id.
            Values::One(None) if matches!(self.key, Key::Attr(_) | Key::Attrs(_)) => {
                return false;
            }
            Values::One(value) => self.pattern.matches(value.as_deref().unwrap_or("")),
            // A multi-valued key matches when any value does; `!=` when none does.
            Values::Many(values) => values.iter().any(|v| self.pattern.matches(v)),
        };
        found == (self.op == Op::Eq)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "==",
            Op::Ne => "!=",
        };
        write!(
            f,
            "{}{op}{:?}",
            self.key.display_name(),
            self.pattern.source()
        )
    }
}

/// One rule: every term must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    own: Vec<Term>,
    parent: Vec<Term>,
}

impl Rule {
    fn new(terms: Vec<Term>) -> Self {
        let (parent, own) = terms.into_iter().partition(|term| term.key.on_parents());
        Self { own, parent }
    }

    /// Whether the rule holds for `node`.
    pub fn matches<N: Node>(&self, node: &N) -> bool {
        if !self.own.iter().all(|term| term.holds(node)) {
            return false;
        }
        if self.parent.is_empty() {
            return true;
        }
        self.holds_on_a_parent(node)
    }

    /// Whether all parent terms hold on `node` or on one of its ancestors.
    fn holds_on_a_parent<N: Node>(&self, node: &N) -> bool {
        if self.parent.iter().all(|term| term.holds(node)) {
            return true;
        }
        let mut current = node.parent();
        // sysfs trees are shallow; the bound only guards against a cycle.
        for _ in 0..256 {
            let Some(candidate) = current else {
                return false;
            };
            if self.parent.iter().all(|term| term.holds(&candidate)) {
                return true;
            }
            current = candidate.parent();
        }
        false
    }

    /// The rule's terms, own then parent.
    #[cfg(test)]
    pub fn terms(&self) -> impl Iterator<Item = &Term> {
        self.own.iter().chain(&self.parent)
    }
}

/// An error in one of the rules: which, where, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule's index in `rules`.
    pub rule: usize,
    /// The parse error.
    pub error: ParseError,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rules[{}], {}", self.rule, self.error)
    }
}

/// All rules of a DeviceSet: a device matches when any rule does.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Parses every rule; the first error names its rule and column.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, RuleError> {
        texts
            .iter()
            .enumerate()
            .map(|(rule, text)| {
                parse::rule(text.as_ref()).map_err(|error| RuleError { rule, error })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether any rule matches `node`.
    pub fn matches<N: Node>(&self, node: &N) -> bool {
        self.0.iter().any(|rule| rule.matches(node))
    }

    /// The rules.
    #[cfg(test)]
    pub fn rules(&self) -> &[Rule] {
        &self.0
    }
}

#[cfg(test)]
mod tests;
