//! Checks of `details` fields that several handlers share, so that the same
//! mistake gets the same message whichever handler reads it.

use std::ops::RangeInclusive;
use std::time::Duration;

use glob::Pattern;

/// Reads the duration `text` of `field` (`500ms`, `30s`, `1m`, ...):
/// `default` when absent; an error naming the field when it does not parse
/// or lies outside `range`.
pub fn duration(
    field: &str,
    text: Option<&str>,
    default: Duration,
    range: RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    let value = humantime::parse_duration(text.trim()).map_err(|error| {
        format!("{field}: {text:?} is not a duration such as 500ms or 30s: {error}")
    })?;
    if !range.contains(&value) {
        return Err(format!(
            "{field}: {text} is out of range ({} to {})",
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end())
        ));
    }
    Ok(value)
}

/// Compiles the shell globs of `field.list` (`*`, `?`, `[a-z]`); an error
/// names the field, the list and the index of a glob that does not compile.
pub fn globs(field: &str, list: &str, globs: &[String]) -> Result<Vec<Pattern>, String> {
    globs
        .iter()
        .enumerate()
        .map(|(index, glob)| {
            Pattern::new(glob).map_err(|error| {
                format!("{field}.{list}[{index}]: {glob:?} is not a valid glob: {error}")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_defaults_ranges_and_messages_that_name_the_field() {
        let range = Duration::from_millis(10)..=Duration::from_secs(60);
        let d = |text| duration("timeout", text, Duration::from_secs(1), range.clone());
        assert_eq!(d(None), Ok(Duration::from_secs(1)));
        assert_eq!(d(Some(" 500ms ")), Ok(Duration::from_millis(500)));
        assert_eq!(
            d(Some("2m")),
            Err("timeout: 2m is out of range (10ms to 1m)".into())
        );
        assert!(
            d(Some("soon")).is_err_and(|e| e.starts_with("timeout: \"soon\" is not a duration"))
        );
    }

    #[test]
    fn a_bad_glob_is_named_by_field_list_and_index() {
        let ok = globs("names", "include", &["boiler*".into()]);
        assert!(ok.is_ok_and(|p| p[0].matches("boiler 1")));
        let bad = globs("names", "exclude", &["a".into(), "[x".into()]);
        assert!(bad.is_err_and(|e| e.starts_with("names.exclude[1]: \"[x\" is not a valid glob")));
    }
}
